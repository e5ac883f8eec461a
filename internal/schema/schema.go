package schema

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Key is one configuration key.
type Key struct {
	Path    string // the TOML path: "gateway.listen"
	Flag    string // the flag's name without dashes: "listen"
	Env     string // the environment variable: "PUSHGRID_LISTEN"
	Default string // the default as the tag writes it ("" when none)
	Help    string
	Type    reflect.Type
	Index   []int // the field's index path from the root struct
	// Secret marks a credential (tag secret:""): printed configurations
	// do not show its value.
	Secret bool
}

var durationType = reflect.TypeFor[time.Duration]()

// Keys lists the keys of the struct type T (a struct or a pointer to one),
// in field order.
func Keys(t reflect.Type) []Key {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var keys []Key
	walk(t, "", nil, &keys)
	return keys
}

func walk(t reflect.Type, prefix string, index []int, keys *[]Key) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		path := prefix + name
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			continue // an array of tables, such as [[channels]]: not one key
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walk(f.Type, path+".", idx, keys)
			continue
		}
		*keys = append(*keys, Key{
			Path:    path,
			Flag:    f.Tag.Get("name"),
			Env:     f.Tag.Get("env"),
			Default: f.Tag.Get("default"),
			Help:    f.Tag.Get("help"),
			Type:    f.Type,
			Index:   idx,
			Secret:  hasTag(f.Tag, "secret"),
		})
	}
}

// Defaults sets every zero field of the struct v points to, at any depth,
// to its tag's default. A field whose default is its zero value, or that
// has none, is left as it is.
func Defaults(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("schema.Defaults: want a pointer to a struct, got %T", v))
	}
	for _, k := range Keys(rv.Type()) {
		if k.Default == "" {
			continue
		}
		f := rv.Elem().FieldByIndex(k.Index)
		if !f.IsZero() {
			continue
		}
		if err := Set(f, k.Default); err != nil {
			panic(fmt.Sprintf("schema.Defaults: %s: default %q: %v", k.Path, k.Default, err))
		}
	}
}

// Set parses s, written as in a tag or on a command line, into f: a string,
// an int, a float64, a bool, a time.Duration or a []string (a comma list).
func Set(f reflect.Value, s string) error {
	switch {
	case f.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(n))
	case f.Kind() == reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		f.SetFloat(n)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		f.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// hasTag reports whether tag has the key name, with any value.
func hasTag(tag reflect.StructTag, name string) bool {
	_, ok := tag.Lookup(name)
	return ok
}
