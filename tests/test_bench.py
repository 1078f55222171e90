"""scripts/bench.py runs and writes well-formed JSON (a smoke test, not a timing assert)."""
import json
import subprocess
import sys

from tests.conftest import REPO


def test_bench_tiny_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--tiny", "--compare-bf16",
                           "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    modes = [r["mode"] for r in report["networks"]]
    assert modes == ["full_precision", "binary", "ternary"]
    for row in report["networks"]:
        assert row["train_step"]["median_s"] > 0 and row["eval_step"]["median_s"] > 0
        assert row["activation_bytes"] > 0 and row["linear_maps_step"]["median_s"] > 0
        if row["mode"] != "full_precision":
            assert row["ratio_train_step"] > 0 and row["ratio_activation_bytes"] > 0
            assert row["ratio_linear_maps_step"] > 0
    assert {d["data"] for d in report["data"]} == {"mnist", "cifar10"}
    assert all(d["device_path_images_per_s"] > 0 for d in report["data"])
    assert report["selection"]["ratio_to_plain_passes"] > 0
    assert [r["mode"] for r in report["precisions"]] == modes
    assert all(r["fp32"]["median_s"] > 0 and r["bf16"]["median_s"] > 0 and r["speedup"] > 0
               for r in report["precisions"])
    assert "ternary" in proc.stdout and "images/s" in proc.stdout
