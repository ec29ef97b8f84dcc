"""Prometheus metrics, served at /metrics (prometheus-client's text format).

Route labels are route templates, never raw paths, so a scanner cannot blow up cardinality.
"""

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

SECONDS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

REQUESTS = Counter("healer_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("healer_request_seconds", "HTTP request latency", ["route"], buckets=SECONDS)
QUEUE_DEPTH = Gauge("healer_queue_depth", "Requests accepted and not yet answered")
BATCH_SIZE = Histogram("healer_batch_size", "Queries per model call", buckets=(1, 2, 4, 8, 16, 32, 64))
INFERENCE = Histogram("healer_inference_seconds", "Model time per batch", buckets=SECONDS)
MODEL_LOAD = Gauge("healer_model_load_seconds", "Time to load and warm up the model")
WARMUP = Gauge("healer_warmup_seconds", "Time the warm-up answer took (answer-only, a blank tile)")
COMPUTE = Gauge("healer_compute_info", "1 for what computes the answers: the processor, its CPU class "
                "(healer/model/cpu_class.py; empty on a GPU) and the kernel of each phase",
                ["processor", "cpu_class", "vision", "prefill", "decode"])
CACHE_HITS = Counter("healer_cache_hits_total", "Answers served from the cache")
ADAPTER = Gauge("healer_adapter_info", "1 for the fine-tuned adapter that serves (ADAPTER_DIR); "
                "name=\"none\" for the base model", ["name", "sha256", "base_revision"])


def observe_request(scope: dict, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    REQUESTS.labels(route, scope["method"], str(status)).inc()
    LATENCY.labels(route).observe(seconds)


def observe_batch(size: int, seconds: float) -> None:
    BATCH_SIZE.observe(size)
    INFERENCE.observe(seconds)


def show_adapter(adapter) -> None:
    """One series: the adapter that serves now (a new app in the same process replaces it)."""
    ADAPTER.clear()
    if adapter is None:
        ADAPTER.labels("none", "", "").set(1)
    else:
        ADAPTER.labels(adapter.name, adapter.sha256, adapter.base_revision or "").set(1)


def show_compute(compute) -> None:
    """One series: what computes now (nothing for an engine that computes nothing, the fake)."""
    COMPUTE.clear()
    if compute is not None:
        kernels = compute.kernels
        COMPUTE.labels(compute.processor, compute.cpu_class or "", kernels.get("vision", ""),
                       kernels.get("prefill", ""), kernels.get("decode", "")).set(1)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
