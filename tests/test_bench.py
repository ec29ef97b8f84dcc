"""The benchmark script keeps working: a tiny-model run of the same code the full-size run uses.

Its numbers mean nothing at this size and are not asserted; only that every row is measured.
"""

from bench.run import main


def test_the_benchmark_runs_end_to_end_on_the_tiny_model(tmp_path, capsys):
    assert main(["--size", "tiny", "--requests", "1", "--clients", "2",
                 "--models", str(tmp_path / "models"), "--out", str(tmp_path / "results")]) == 0
    [report] = (tmp_path / "results").glob("tiny-*.md")
    text = report.read_text()
    for row in ("cold start to ready", "explained answer p50 / p95", "answer-only p50 / p95",
                "throughput, 2 clients", "GET / p99 under load", "peak RSS: anon / file"):
        assert row in text
    assert "| original | healer-bf16 | healer-int8 |" in text
    assert "Machine:" in text and "matmul ceiling" in text
    out = capsys.readouterr().out
    assert text in out
    # The peer's GGUF files exist only at full size (and not at all in CI): left out, saying why.
    assert "skipping llama-cpp: its GGUF files are converted from the full-size checkpoint only" in out
