package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushgrid/pushgrid/session"
)

// newRegistry is the registry /metrics serves: Go's and the process's
// figures, the hub's, and extra.
func newRegistry(hub *session.Hub, extra []prometheus.Collector) (*prometheus.Registry, error) {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&hubCollector{hub: hub},
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

var (
	descConnections   = prometheus.NewDesc("pushgrid_connections", "Client connections on this node.", nil, nil)
	descChannels      = prometheus.NewDesc("pushgrid_channels", "Channels with members on this node.", nil, nil)
	descReceived      = prometheus.NewDesc("pushgrid_messages_received_total", "Frames received from clients.", nil, nil)
	descDelivered     = prometheus.NewDesc("pushgrid_messages_delivered_total", "Frames handed to client connections.", nil, nil)
	descSlowConsumers = prometheus.NewDesc("pushgrid_slow_consumers_total", "Clients closed with 4001 because they fell behind.", nil, nil)
	descDropped       = prometheus.NewDesc("pushgrid_messages_dropped_total", "Channel messages dropped because the channel's backlog on this node passed its bound (the node could not fan out as fast).", nil, nil)
	descErrors        = prometheus.NewDesc("pushgrid_errors_total", "Error frames sent to clients, by code.", []string{"code"}, nil)
)

// hubCollector reads one consistent snapshot of the hub's figures per
// scrape; nothing on the message path touches Prometheus.
type hubCollector struct{ hub *session.Hub }

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descChannels, descReceived, descDelivered, descSlowConsumers, descDropped, descErrors} {
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
}
