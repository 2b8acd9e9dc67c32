// Package metrics is the broker's Prometheus instrumentation: HTTP requests,
// attestations, resource decisions and cache hits, plugin calls and
// restarts, errors and sessions, served at /metrics. Every method is safe
// on a nil *Metrics, so that code under test needs none.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gokbs/kbs/sdk"
)

const namespace = "kbs"

// Latency buckets from 100 µs (a Bearer fetch on a quiet machine) to 10 s
// (a verifier fetching collateral from a slow service).
var buckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics holds the collectors of one broker.
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	attestations *prometheus.CounterVec
	resources    *prometheus.CounterVec
	pluginCalls  *prometheus.CounterVec
	pluginTime   *prometheus.HistogramVec
	errs         *prometheus.CounterVec
	rateLimited  prometheus.Counter
	// The two series of kbs_resource_cache_total, resolved once: they are
	// counted on every resource request.
	cacheHit, cacheMiss prometheus.Counter
}

// New returns the broker's metrics on a registry of their own, with the Go
// runtime's and the process's.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests by route, method and status code.",
		}, []string{"endpoint", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route and method.", Buckets: buckets,
		}, []string{"endpoint", "method"}),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "attestations_total",
			Help: "Appraised evidence by TEE and verdict (the EAR status, or failed when the evidence was rejected).",
		}, []string{"tee", "status"}),
		resources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "resource_decisions_total",
			Help: "Resource requests decided by the resource policy: released or denied.",
		}, []string{"decision"}),
		pluginCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "plugin_calls_total",
			Help: "Calls into plugins by plugin, method and outcome (ok, or the error class; deadline when the call timed out).",
		}, []string{"plugin", "method", "outcome"}),
		pluginTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "plugin_call_duration_seconds",
			Help: "Time of a call into a plugin, by plugin and method.", Buckets: buckets,
		}, []string{"plugin", "method"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "errors_total",
			Help: "Error answers by KBS error type.",
		}, []string{"type"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "auth_rate_limited_total",
			Help: "Auth requests refused by the session.auth_rate limit.",
		}),
	}
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "resource_cache_total",
		Help: "Resource requests the policy allowed, by whether the resource cache held the value (hit) or the backend was asked (miss).",
	}, []string{"result"})
	m.cacheHit, m.cacheMiss = cache.WithLabelValues("hit"), cache.WithLabelValues("miss")
	m.reg.MustRegister(m.requests, m.duration, m.attestations, m.resources, m.pluginCalls, m.pluginTime, m.errs, m.rateLimited, cache,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// codes caches the label of the usual status codes.
var codes = func() map[int]string {
	c := map[int]string{}
	for _, code := range []int{200, 400, 401, 403, 404, 405, 413, 429, 500, 503} {
		c[code] = strconv.Itoa(code)
	}
	return c
}()

// Request records one answered HTTP request. endpoint is the route
// pattern, never the raw path, so that the label set stays bounded.
func (m *Metrics) Request(endpoint, method string, code int, elapsed time.Duration) {
	if m == nil {
		return
	}
	if endpoint == "" {
		endpoint = "other"
	}
	c, ok := codes[code]
	if !ok {
		c = strconv.Itoa(code)
	}
	m.requests.WithLabelValues(endpoint, method, c).Inc()
	m.duration.WithLabelValues(endpoint, method).Observe(elapsed.Seconds())
}

// Attestation records one appraised piece of evidence.
func (m *Metrics) Attestation(tee, status string) {
	if m == nil {
		return
	}
	m.attestations.WithLabelValues(tee, status).Inc()
}

// Resource records a resource policy decision.
func (m *Metrics) Resource(released bool) {
	if m == nil {
		return
	}
	d := "denied"
	if released {
		d = "released"
	}
	m.resources.WithLabelValues(d).Inc()
}

// ResourceCache records whether the resource cache held the value of a
// request the policy allowed.
func (m *Metrics) ResourceCache(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cacheHit.Inc()
	} else {
		m.cacheMiss.Inc()
	}
}

// PluginCall records one call into a plugin ("verifier/sample").
func (m *Metrics) PluginCall(plugin, method string, elapsed time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "deadline"
	default:
		outcome = string(sdk.ClassOf(err))
	}
	m.pluginCalls.WithLabelValues(plugin, method, outcome).Inc()
	m.pluginTime.WithLabelValues(plugin, method).Observe(elapsed.Seconds())
}

// Error records an error answer of the given KBS error type.
func (m *Metrics) Error(typ string) {
	if m == nil {
		return
	}
	m.errs.WithLabelValues(typ).Inc()
}

// RateLimited records an auth request refused by the rate limit.
func (m *Metrics) RateLimited() {
	if m == nil {
		return
	}
	m.rateLimited.Inc()
}

// PluginState is what the metrics show of one plugin.
type PluginState struct {
	ID       string // "verifier/sample"
	Up       bool
	Restarts int
}

// WatchPlugins reports the plugins' states, read at every scrape.
func (m *Metrics) WatchPlugins(states func() []PluginState) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&pluginCollector{states: states})
}

// WatchSessions reports the number of sessions held, read at every scrape.
func (m *Metrics) WatchSessions(n func() int) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sessions",
		Help: "Handshake sessions held (bounded by session.max_sessions).",
	}, func() float64 { return float64(n()) }))
}

var (
	upDesc = prometheus.NewDesc(namespace+"_plugin_up",
		"1 while the plugin's process is running and answering, else 0.", []string{"plugin"}, nil)
	restartsDesc = prometheus.NewDesc(namespace+"_plugin_restarts_total",
		"Restarts of the plugin after it went down.", []string{"plugin"}, nil)
)

type pluginCollector struct{ states func() []PluginState }

func (c *pluginCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upDesc
	ch <- restartsDesc
}

func (c *pluginCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.states() {
		up := 0.0
		if s.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up, s.ID)
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(s.Restarts), s.ID)
	}
}
