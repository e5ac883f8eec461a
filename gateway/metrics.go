package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushgrid/pushgrid/session"
)

// newRegistry is the registry /metrics serves: Go's and the process's
// figures, the hub's, g's connections by transport, and extra.
func newRegistry(g *Gateway, extra []prometheus.Collector) (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&hubCollector{hub: g.hub},
		transportCollector{g: g},
	)
	for _, c := range extra {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func metricsHandler(r *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(r, promhttp.HandlerOpts{})
}

// helpConnections is the help of pushgrid_connections, with or without
// the transport label: one family has one help.
const helpConnections = "Client connections on this node: without labels, all of them; with transport (ws, sio-polling, sio-websocket), those of one kind."

var (
	descConnections   = prometheus.NewDesc("pushgrid_connections", helpConnections, nil, nil)
	descChannels      = prometheus.NewDesc("pushgrid_channels", "Channels with members on this node.", nil, nil)
	descReceived      = prometheus.NewDesc("pushgrid_messages_received_total", "Frames received from clients.", nil, nil)
	descDelivered     = prometheus.NewDesc("pushgrid_messages_delivered_total", "Frames handed to client connections.", nil, nil)
	descSlowConsumers = prometheus.NewDesc("pushgrid_slow_consumers_total", "Clients closed with 4001 because they fell behind.", nil, nil)
	descDropped       = prometheus.NewDesc("pushgrid_messages_dropped_total", "Channel messages dropped because the channel's backlog on this node passed its bound (the node could not fan out as fast).", nil, nil)
	descErrors        = prometheus.NewDesc("pushgrid_errors_total", "Error frames sent to clients, by code.", []string{"code"}, nil)
	descRecoveries    = prometheus.NewDesc("pushgrid_recoveries_total", "Joins with since on history channels, by whether message since was still stored (recovered).", []string{"recovered"}, nil)
	descPresence      = prometheus.NewDesc("pushgrid_presence_requests_total", "Presence frames from clients answered.", nil, nil)
)

// hubCollector reads one consistent snapshot of the hub's figures per
// scrape; nothing on the message path touches Prometheus.
type hubCollector struct{ hub *session.Hub }

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descChannels, descReceived, descDelivered, descSlowConsumers, descDropped, descErrors, descRecoveries, descPresence} {
		ch <- d
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.hub.Stats()
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(s.Connections))
	ch <- prometheus.MustNewConstMetric(descChannels, prometheus.GaugeValue, float64(s.Channels))
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(s.Received))
	ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(s.Delivered))
	ch <- prometheus.MustNewConstMetric(descSlowConsumers, prometheus.CounterValue, float64(s.SlowConsumers))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped))
	for _, code := range session.Codes {
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.Errors[code]), string(code))
	}
	ch <- prometheus.MustNewConstMetric(descRecoveries, prometheus.CounterValue, float64(s.Recovered), "true")
	ch <- prometheus.MustNewConstMetric(descRecoveries, prometheus.CounterValue, float64(s.Unrecovered), "false")
	ch <- prometheus.MustNewConstMetric(descPresence, prometheus.CounterValue, float64(s.Presence))
}

// descTransportConnections is pushgrid_connections by transport. Its
// series share the family of the unlabelled total, which keeps its
// meaning (every hub connection, whatever its transport).
var descTransportConnections = prometheus.NewDesc("pushgrid_connections", helpConnections, []string{"transport"}, nil)

// transportWS is the transport label of the hub's /ws connections.
const transportWS = "ws"

// transportCollector reports pushgrid_connections{transport}: "ws" as the
// gateway counts it, the others as mounted handlers do (CountConnections).
// A registry refuses two descriptions of one family with different labels,
// so it describes nothing: it is an unchecked collector, which may add
// labelled series to the family of the hub's unlabelled total.
type transportCollector struct{ g *Gateway }

func (transportCollector) Describe(chan<- *prometheus.Desc) {}

func (c transportCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descTransportConnections, prometheus.GaugeValue, float64(c.g.wsConns.Load()), transportWS)
	// Made under the lock, sent after it: a send waits for the scrape,
	// and CountConnections, on mounted handlers' connects, must not.
	c.g.countMu.Lock()
	ms := make([]prometheus.Metric, 0, len(c.g.counts))
	for transport, n := range c.g.counts {
		ms = append(ms, prometheus.MustNewConstMetric(descTransportConnections, prometheus.GaugeValue, float64(n), transport))
	}
	c.g.countMu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}
