"""The opforge Python package against the command line it wraps.

Run by ctest with PYTHONPATH=BUILD/python, OPFORGE_CLI (the opforge binary)
and OPFORGE_SOURCE_DIR set."""

import json
import os
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import numpy as np

import opforge

CLI = os.environ["OPFORGE_CLI"]
SOURCE = Path(os.environ["OPFORGE_SOURCE_DIR"])
SAMPLE = SOURCE / "tests/data/conformance/inputs/carving256.png"


def cli(*args, check=True):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, check=check)


def quantised(a):
    """What a png8 file stores of a float image, back on [0, 1] (the writer
    rounds in double, the reader divides in double)."""
    levels = np.floor(np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5)
    return (levels / 255).astype(np.float32)


class Operators(unittest.TestCase):
    def test_registry_is_the_cli_list(self):
        self.assertEqual(opforge.operators(), json.loads(cli("list", "--json").stdout)["operators"])
        for op in opforge.operators():
            self.assertTrue(callable(getattr(opforge, op["name"])), op["name"])

    def test_every_operator_equals_the_cli_byte_for_byte(self):
        img = opforge.read_image(SAMPLE)
        with tempfile.TemporaryDirectory() as d:
            for op in opforge.operators():
                with self.subTest(op["name"]):
                    required = {p["name"]: str(SAMPLE) for p in op["params"] if p.get("required")}
                    args = []
                    for name, value in required.items():
                        args += ["--param", f"{name}={value}"]
                    cli("apply", op["name"], SAMPLE, Path(d) / "cli.npy", "--seed", 11, *args)
                    out = opforge.apply(op["name"], img, seed=11, **required)
                    opforge.write_image(Path(d) / "py.npy", out)
                    self.assertEqual((Path(d) / "cli.npy").read_bytes(), (Path(d) / "py.npy").read_bytes())

    def test_named_functions_take_keyword_parameters(self):
        img = opforge.read_image(SAMPLE)
        a = opforge.l0_smooth(img, lambda_=0.05, kappa=1.5)
        b = opforge.apply("l0_smooth", img, **{"lambda": 0.05, "kappa": 1.5})
        np.testing.assert_array_equal(a, b)
        noisy = opforge.gaussian_noise(img, sigma=30, clip=False, quantize=False, seed=3)
        self.assertLess(noisy.min(), 0.0)  # unclipped: booleans are booleans
        self.assertIn("valid (0, 1]", opforge.l0_smooth.__doc__)
        self.assertIn("Xu", opforge.l0_smooth.__doc__)

    def test_bad_input_raises_value_error_with_the_cli_message(self):
        img = opforge.read_image(SAMPLE)
        cases = [("l0_smooth", {"lambda": "-1"}), ("rtv_smooth", {"solver": "lu"}), ("l0_smooth", {"lamda": "0.1"}),
                 ("gaussian_noise", {"clip": "maybe"})]
        for name, params in cases:
            with self.subTest(name=name, params=params):
                args = [a for k, v in params.items() for a in ("--param", f"{k}={v}")]
                line = cli("apply", name, SAMPLE, "/tmp/unused.png", *args, check=False).stderr.strip()
                with self.assertRaises(ValueError) as caught:
                    opforge.apply(name, img, **params)
                self.assertEqual(line, f"opforge apply: {caught.exception}")
        with self.assertRaises(ValueError):
            opforge.apply("l0_smoothing", img)
        with self.assertRaises(ValueError):
            opforge.l0_smooth(np.zeros((4, 4, 4), np.float32))  # 4 channels
        with self.assertRaises(ValueError):
            opforge.l0_smooth(np.zeros((4, 4), np.float64))  # dtype

    def test_uint8_and_uint16_are_scaled_as_the_readers_scale(self):
        img = opforge.read_image(SAMPLE)
        u8 = np.round(img * 255).astype(np.uint8)
        np.testing.assert_array_equal(opforge.l0_smooth(u8), opforge.l0_smooth(img))
        u16 = u8.astype(np.uint16) * 257
        np.testing.assert_array_equal(opforge.l0_smooth(u16), opforge.l0_smooth(img))

    def test_read_write_round_trip(self):
        img = opforge.read_image(SAMPLE)
        with tempfile.TemporaryDirectory() as d:
            opforge.write_image(Path(d) / "a.png", img)
            np.testing.assert_array_equal(opforge.read_image(Path(d) / "a.png"), img)
            with self.assertRaises(ValueError):
                opforge.write_image(Path(d) / "a.bmp", img)

    def test_metrics_match_the_cli(self):
        img = opforge.read_image(SAMPLE)
        smooth = opforge.l0_smooth(img)
        m = opforge.metrics(img, smooth)
        self.assertEqual(opforge.metrics(img, img)["max_abs"], 0.0)
        self.assertGreater(m["psnr"], 20)
        self.assertLess(m["ssim"], 1)
        y = opforge.metrics(img, smooth, y_channel=True, shave=4)
        self.assertNotEqual(y["psnr"], m["psnr"])


class Models(unittest.TestCase):
    MODEL = SOURCE / "tests/data/models/L0_smoothing.safetensors"

    def test_cpu_run_equals_opforge_infer(self):
        img = opforge.read_image(SAMPLE)
        with tempfile.TemporaryDirectory() as d:
            cli("infer", self.MODEL, SAMPLE, Path(d) / "cli.npy")
            opforge.write_image(Path(d) / "py.npy", opforge.Model(self.MODEL).run(img))
            self.assertEqual((Path(d) / "cli.npy").read_bytes(), (Path(d) / "py.npy").read_bytes())

    def test_vulkan_run_matches_the_cpu(self):
        img = opforge.read_image(SAMPLE)[:64, :80]
        model = opforge.Model(self.MODEL)
        cpu = model.run(img)
        gpu = model.run(img, device="vulkan")
        self.assertLessEqual(float(np.abs(gpu - cpu).max()), 1e-4)

    def test_bad_calls_raise_value_error(self):
        model = opforge.Model(self.MODEL)
        img = opforge.read_image(SAMPLE)
        with self.assertRaises(ValueError):
            model.run(img, device="tpu")
        with self.assertRaises(ValueError):
            model.run(img, planes=[0.5])  # this model has no planes
        with self.assertRaises(ValueError):
            opforge.Model(SAMPLE)  # not a model file
        self.assertIn("MIT", " ".join(model.metadata.values()))


class GilRelease(unittest.TestCase):
    """Timed: ctest runs it alone (RUN_SERIAL)."""

    def test_the_gil_is_released_while_an_operator_runs(self):
        img = opforge.read_image(SOURCE / "tests/data/samples/mit_adobe_000003_1024.jpg")
        opforge.set_threads(1)  # each call on one core: two calls can use both
        try:
            def one_call():
                opforge.rolling_guidance(img)

            def timed(fn):
                start = time.perf_counter()
                fn()
                return time.perf_counter() - start

            def two_threads():
                threads = [threading.Thread(target=one_call) for _ in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

            one_call()  # warm up
            single = min(timed(one_call) for _ in range(3))
            double = min(timed(two_threads) for _ in range(3))
            print(f"one call {single:.3f} s, two calls in two threads {double:.3f} s ({double / single:.2f}x)")
            if os.cpu_count() >= 2:
                self.assertLess(double, 1.6 * single)
        finally:
            opforge.set_threads(None)


class Datasets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name) / "demo"
        cls.recipe = SOURCE / "manifests/demo.yaml"
        reports = []
        cls.summary = opforge.generate(cls.recipe, cls.dir, threads=2, progress=lambda *r: reports.append(r))
        cls.reports = reports

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def rows(self):
        return [json.loads(line) for line in (self.dir / "metadata.jsonl").read_text().splitlines()]

    def test_generate_writes_the_cli_dataset(self):
        self.assertEqual(self.summary["written"], 36)
        self.assertTrue(self.reports and self.reports[-1][0] == 36)
        cli_dir = Path(self.tmp.name) / "cli"
        cli("datagen", self.recipe, "--out", cli_dir, "-q")
        self.assertEqual((cli_dir / "metadata.jsonl").read_bytes(), (self.dir / "metadata.jsonl").read_bytes())

    def test_dataset_items_are_the_files(self):
        ds = opforge.Dataset(self.dir)
        rows = self.rows()
        self.assertEqual(len(ds), len(rows))
        for i in (0, 17, len(ds) - 1):
            item = ds[i]
            self.assertEqual(item["key"], rows[i]["key"])
            self.assertEqual(item["params"], rows[i]["params"])
            np.testing.assert_array_equal(item["input"], opforge.read_image(self.dir / rows[i]["input_file_name"]))
            np.testing.assert_array_equal(item["output"], opforge.read_image(self.dir / rows[i]["output_file_name"]))
        train, validation = opforge.Dataset(self.dir, "train"), opforge.Dataset(self.dir, "validation")
        self.assertEqual(len(train) + len(validation), len(ds))
        self.assertFalse({train[i]["source"] for i in range(len(train))} &
                         {validation[i]["source"] for i in range(len(validation))})
        with self.assertRaises(IndexError):
            ds[len(ds)]

    def test_dataset_and_sampler_pickle_for_spawned_workers(self):
        import pickle
        ds = pickle.loads(pickle.dumps(opforge.Dataset(self.dir, "validation")))
        self.assertEqual(ds[0]["key"], opforge.Dataset(self.dir, "validation")[0]["key"])
        sampler = pickle.loads(pickle.dumps(opforge.Sampler(self.recipe)))
        np.testing.assert_array_equal(sampler[5][1], opforge.Sampler(self.recipe)[5][1])

    def test_sampler_reproduces_the_written_rows(self):
        sampler = opforge.Sampler(self.recipe)
        rows = {r["key"]: r for r in self.rows()}
        self.assertEqual(len(sampler), len(rows))
        for k, (inp, out, info) in enumerate(sampler):
            row = rows[sampler.key(k)]
            self.assertEqual(info["key"], row["key"])
            self.assertEqual(info["operator"], row["operator"])
            self.assertEqual(info["seed"], row["seed"])
            self.assertEqual(info["params"], row["params"])
            np.testing.assert_array_equal(quantised(inp), opforge.read_image(self.dir / row["input_file_name"]))
            np.testing.assert_array_equal(quantised(out), opforge.read_image(self.dir / row["output_file_name"]))


if __name__ == "__main__":
    unittest.main()
