package node

import (
	"github.com/prometheus/client_golang/prometheus"
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
