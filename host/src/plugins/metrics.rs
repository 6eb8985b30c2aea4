//! Per-plugin metrics: calls, rejections, failures by kind, CPU time, memory high-water, latency.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub plugin: String,
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub plugin: String,
    pub kind: String,
    /// What the failure policy did: `closed` (request refused) or `open` (plugin skipped).
    pub policy: String,
}

type Histograms = Family<PluginLabels, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 5 µs .. ~160 ms
    Histogram::new(exponential_buckets(0.000_005, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub plugin: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CompileLabels {
    pub plugin: String,
    /// `hit` (machine code from the precompiled cache) or `miss` (compiled).
    pub cache: String,
}

pub struct PluginMetrics {
    pub reloads: Family<OutcomeLabels, Counter>,
    pub loads: Family<CompileLabels, Counter>,
    pub calls: Family<HookLabels, Counter>,
    pub rejections: Family<PluginLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub cpu_seconds: Family<PluginLabels, Counter<f64, AtomicU64>>,
    pub memory_high_water: Family<PluginLabels, Gauge>,
    pub duration: Histograms,
    /// Hook calls served by a prepared instance (`limits.prepared_instances`).
    pub prepared: Family<PluginLabels, Counter>,
}

impl PluginMetrics {
    pub fn new() -> PluginMetrics {
        PluginMetrics {
            reloads: Family::default(),
            loads: Family::default(),
            calls: Family::default(),
            rejections: Family::default(),
            failures: Family::default(),
            cpu_seconds: Family::default(),
            memory_high_water: Family::default(),
            duration: Family::new_with_constructor(latency),
            prepared: Family::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plugin_reloads",
            "Plugin version changes by outcome: activated, refused (the serving version stayed), quarantined",
            self.reloads.clone(),
        );
        registry.register(
            "plugin_loads",
            "Components loaded, by whether the precompiled cache had their machine code",
            self.loads.clone(),
        );
        registry.register("plugin_calls", "Plugin hook calls by plugin and hook", self.calls.clone());
        registry.register("plugin_rejections", "Requests a plugin rejected", self.rejections.clone());
        registry.register(
            "plugin_failures",
            "Plugin calls that failed (trap, deadline, memory, invalid output, ...) and what the route's failure policy did",
            self.failures.clone(),
        );
        registry.register(
            "plugin_cpu_seconds",
            "Wasm execution time of plugin calls, host calls excluded",
            self.cpu_seconds.clone(),
        );
        registry.register(
            "plugin_memory_high_water_bytes",
            "Largest linear memory a call of the plugin reached",
            self.memory_high_water.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Plugin hook call latency (fresh instance included)",
            self.duration.clone(),
        );
        registry.register(
            "plugin_prepared_calls",
            "Plugin hook calls that ran in a prepared instance (instantiated ahead, used once)",
            self.prepared.clone(),
        );
    }

    pub fn reload(&self, plugin: &str, outcome: &str) {
        self.reloads.get_or_create(&OutcomeLabels { plugin: plugin.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    pub fn loaded(&self, plugin: &str, from_cache: bool) {
        let cache = if from_cache { "hit" } else { "miss" };
        self.loads.get_or_create(&CompileLabels { plugin: plugin.to_owned(), cache: cache.to_owned() }).inc();
    }

    pub fn observe(&self, plugin: &str, hook: &str, stats: &super::runtime::CallStats) {
        let p = PluginLabels { plugin: plugin.to_owned() };
        self.calls.get_or_create(&HookLabels { plugin: plugin.to_owned(), hook: hook.to_owned() }).inc();
        self.cpu_seconds.get_or_create(&p).inc_by(stats.cpu.as_secs_f64());
        self.duration.get_or_create(&p).observe(stats.wall.as_secs_f64());
        if stats.prepared {
            self.prepared.get_or_create(&p).inc();
        }
        let g = self.memory_high_water.get_or_create(&p);
        let hw = i64::try_from(stats.memory_high_water).unwrap_or(i64::MAX);
        // Gauges have no atomic max; a lost race only delays the mark to the next call.
        if hw > g.get() {
            g.set(hw);
        }
    }
}

impl Default for PluginMetrics {
    fn default() -> Self {
        PluginMetrics::new()
    }
}
