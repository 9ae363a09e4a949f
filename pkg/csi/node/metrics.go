package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/layerset/layerset-csi/pkg/layers"
)

// volumeCollector reports the node's volumes by kind and phase, read from
// their records at each scrape, so the numbers cannot drift from them.
type volumeCollector struct {
	state records
	desc  *prometheus.Desc
}

func newVolumeCollector(state records) *volumeCollector {
	return &volumeCollector{
		state: state,
		desc: prometheus.NewDesc("layerset_csi_node_volumes",
			"Volumes the node has a record of, by kind (ephemeral, persistent) and phase.",
			[]string{"kind", "phase"}, nil),
	}
}

func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	records, _, err := c.state.list()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	type key struct{ kind, phase string }
	counts := map[key]int{}
	for _, r := range records {
		counts[key{string(r.Kind), string(r.Phase)}]++
	}
	for k, v := range counts {
		m, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(v), k.kind, k.phase)
		if err != nil {
			m = prometheus.NewInvalidMetric(c.desc, err)
		}
		ch <- m
	}
}

// pullCollector reports the layer store's pulls, read from its totals at
// each scrape: every import counts, the node service's, the prefetch's.
type pullCollector struct {
	store               *layers.Store
	bytes, secs, layers *prometheus.Desc
}

// NewPullCollector returns the collector of store's layer pulls:
// layerset_pull_bytes_total (compressed bytes read from layer blobs, as
// they stream, failed imports included), layerset_pull_seconds_total
// (time spent importing layers, summed over layers, so concurrent imports
// add up; those in progress count up to the scrape) and
// layerset_pull_layers_total by result, ok or error.
func NewPullCollector(store *layers.Store) prometheus.Collector {
	return &pullCollector{
		store: store,
		bytes: prometheus.NewDesc("layerset_pull_bytes_total",
			"Compressed bytes of layer blobs read by imports into the node's layer store, failed and unfinished imports included.", nil, nil),
		secs: prometheus.NewDesc("layerset_pull_seconds_total",
			"Seconds spent importing layers, summed over layers (concurrent imports add up); imports in progress count up to now.", nil, nil),
		layers: prometheus.NewDesc("layerset_pull_layers_total",
			"Layer imports that ended, by result (ok, error).", []string{"result"}, nil),
	}
}

func (c *pullCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.secs
	ch <- c.layers
}

func (c *pullCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.store.PullStats()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.secs, prometheus.CounterValue, st.Duration.Seconds())
	ch <- prometheus.MustNewConstMetric(c.layers, prometheus.CounterValue, float64(st.Imported), "ok")
	ch <- prometheus.MustNewConstMetric(c.layers, prometheus.CounterValue, float64(st.Failed), "error")
}
