package schema

import (
	"reflect"
	"testing"
	"time"
)

type inner struct {
	Port  int           `toml:"port" name:"port" env:"X_PORT" default:"8000" help:"the port"`
	Wait  time.Duration `toml:"wait" default:"5s"`
	Rate  float64       `toml:"rate" default:"2.5"`
	On    bool          `toml:"on" default:"true"`
	List  []string      `toml:"list" default:"a, b"`
	Zero  int           `toml:"zero" default:"0"`
	NoKey string        `toml:"-" default:"x"`
}

type outer struct {
	Name  string `toml:"name" default:"n"`
	Inner inner  `toml:"inner"`
	Skip  inner
}

func TestKeys(t *testing.T) {
	var paths []string
	for _, k := range Keys(reflect.TypeFor[outer]()) {
		paths = append(paths, k.Path)
	}
	want := []string{"name", "inner.port", "inner.wait", "inner.rate", "inner.on", "inner.list", "inner.zero"}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}
	k := Keys(reflect.TypeFor[*outer]())[1]
	if k.Flag != "port" || k.Env != "X_PORT" || k.Default != "8000" || k.Help != "the port" || k.Type.Kind() != reflect.Int {
		t.Fatalf("key %+v", k)
	}
}

func TestDefaults(t *testing.T) {
	o := outer{Inner: inner{Port: 9}}
	Defaults(&o)
	want := outer{Name: "n", Inner: inner{Port: 9, Wait: 5 * time.Second, Rate: 2.5, On: true, List: []string{"a", "b"}}}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("got %+v, want %+v", o, want)
	}
}

func TestSetRefusesBadValues(t *testing.T) {
	var o inner
	v := reflect.ValueOf(&o).Elem()
	for _, c := range []struct {
		field, value string
	}{{"Port", "x"}, {"Wait", "5"}, {"Rate", "fast"}, {"On", "maybe"}} {
		if err := Set(v.FieldByName(c.field), c.value); err == nil {
			t.Errorf("%s = %q accepted", c.field, c.value)
		}
	}
}
