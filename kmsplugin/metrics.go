package kmsplugin

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tencrypt/tencrypt/keys"
)

// metrics are the plugin's Prometheus collectors (docs/KMS-PLUGIN.md).
type metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
	healthy  prometheus.Gauge
	version  prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tencrypt_kms_operations_total",
			Help: "KMS v2 calls by operation (status, encrypt, decrypt) and outcome (ok or an error class).",
		}, []string{"op", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tencrypt_kms_operation_duration_seconds",
			Help:    "Time to answer a KMS v2 call, backend included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"op"}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tencrypt_kms_healthy",
			Help: "1 if the last Status reached the backend and found the cluster key, else 0.",
		}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tencrypt_kms_key_version",
			Help: "The cluster key's current KEK version, as the last successful Status read it.",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.ops, m.duration, m.healthy, m.version} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observe counts one call that started at start and ended with *err.
func (m *metrics) observe(op string, start time.Time, err *error) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	outcome := "ok"
	if *err != nil {
		outcome = keys.ErrorClass(*err)
		if errors.Is(*err, ErrBadKeyID) {
			outcome = "bad_key_id"
		}
	}
	m.ops.WithLabelValues(op, outcome).Inc()
}
