"""The mask doctor (``graphmask check``): planted mask bugs are found, correct models pass."""
import json

import numpy as np
import pytest

import graphmask as gm
from graphmask.cli import main
from graphmask.inspect import doctor

h5py = pytest.importorskip("h5py", reason="Keras files need h5py (pip install "
                                          "'graphmask[keras]')")

from tests.io.test_keras_files import (  # noqa: E402
    entry,
    functional_config,
    functional_weights,
    tensor,
    weights_h5,
    write_keras,
)


def keras_file_with_reshape(tmp_path):
    """The Keras tagger of tests/io with a Reshape between the Embedding and the LSTM:
    Keras warns once and drops the mask; the LSTM and the pooling then read padding."""
    cfg = functional_config()
    layers = cfg["config"]["layers"]
    layers.insert(3, entry("Reshape", "reshape", {"target_shape": [5, 4]},
                           [tensor("embedding", [None, 5, 4])]))
    lstm = layers[4]
    lstm["inbound_nodes"][0] = {"args": [tensor("reshape", [None, 5, 4])], "kwargs": {}}
    layers[6]["inbound_nodes"][0]["kwargs"] = {}
    groups = functional_weights()
    groups["layers/reshape/vars"] = []
    return write_keras(tmp_path / "bug.keras", cfg, weights_h5(groups))


def test_a_mask_dropped_in_a_keras_file_is_found(tmp_path, capsys):
    path = keras_file_with_reshape(tmp_path)
    with pytest.raises(gm.errors.MaskError):
        gm.load_model(path)  # graphmask itself refuses such a model
    assert main(["check", path, "--examples", "3"]) == 1
    out = capsys.readouterr().out
    assert "[mask-dropped] the mask made by layer 'embedding' reaches layer 'reshape' " \
           "(Reshape), which neither uses nor passes masks" in out
    assert "[mask-missing] layer 'lstm' (LSTM) reads a padding mask but receives none: it " \
           "was lost at layer 'reshape'" in out
    assert "[mask-missing] layer 'pool' (GlobalAveragePooling1D)" in out
    assert "[invariant]" in out and "smallest failing batch: [[[" in out


def test_a_correct_keras_file_passes(tmp_path, capsys):
    path = write_keras(tmp_path / "ok.keras", functional_config(),
                       weights_h5(functional_weights()))
    assert main(["check", path, "--examples", "4", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("no mask problem found; invariants hold on 4 random padded "
                        "batch(es)\n")


def merged():
    """A masked and an unmasked branch merged: Keras silently drops the mask."""
    ids = gm.Input((5,), dtype="int32", name="ids")
    feats = gm.Input((5, 3), name="feats")
    e = gm.Embedding(9, 3, mask_zero=True, name="emb")(ids)
    s = gm.Add(name="merge")([e, feats])
    return gm.Model([ids, feats], gm.Dense(2, name="head")(s))


def pooled():
    ids = gm.Input((5,), dtype="int32")
    e = gm.Embedding(9, 3, mask_zero=True)(ids)
    h = gm.LSTM(2, return_sequences=True)(e)
    return gm.Model(ids, gm.Dense(1)(gm.GlobalAveragePooling1D()(h)))


def test_merge_of_masked_and_unmasked_branches_json(capsys):
    assert main(["check", "tests.inspect.test_doctor:merged", "--examples", "2",
                 "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    kinds = [(f["kind"], f["layer"]) for f in report["findings"]]
    assert kinds == [("merge-drops-mask", "merge"), ("output-unmasked", "head")]
    assert report["findings"][0]["message"].startswith(
        "layer 'merge' (Add) merges masked and unmasked inputs (unmasked: ['feats'])")
    assert report["ok"] is False and report["examples_checked"] == 2
    assert report["violations"] and report["violations"][0]["batch"]


def test_gmz_file_and_function_without_problems(tmp_path, capsys):
    gm.set_random_seed(0)
    path = tmp_path / "m.gmz"
    pooled().save(path)
    assert main(["check", str(path), "--examples", "3"]) == 0
    assert main(["check", "tests.inspect.test_doctor:pooled", "--examples", "0"]) == 0
    assert "invariants hold on 0 random" in capsys.readouterr().out


def test_random_batches_follow_the_input_spec():
    model = merged()
    from graphmask.testing._runner import input_pads
    rng = np.random.default_rng(0)
    xs = doctor.random_batch(model, rng, input_pads(model))
    assert xs[0].dtype == np.int32 and xs[0].shape[1] == 5 and xs[1].shape[1:] == (5, 3)
    assert xs[0].min() >= 0 and xs[0].max() < 9
    assert (xs[0][0] != 0).all()  # the first row is never padded
    again = doctor.random_batch(model, np.random.default_rng(0), input_pads(model))
    assert all(np.array_equal(a, b) for a, b in zip(xs, again))


def test_bad_examples_argument(capsys):
    assert main(["check", "tests.inspect.test_doctor:pooled", "--examples", "-1"]) == 2
    assert "--examples must be >= 0, got -1" in capsys.readouterr().err


def test_a_lost_mask_before_a_composed_recurrent_layer_is_found():
    ids = gm.Input((5,), dtype="int32", name="ids")
    feats = gm.Input((5, 3), name="feats")
    e = gm.Embedding(9, 3, mask_zero=True, name="emb")(ids)
    s = gm.Add(name="merge")([e, feats])
    b = gm.Bidirectional(gm.LSTM(2), name="bi")(s)
    r = gm.RNN(gm.GRUCell(2), name="rnn")(s)
    found = doctor.analyse(gm.Model([ids, feats], [gm.Dense(2, name="head")(b), r]))
    assert [(f.kind, f.layer) for f in found] == [
        ("merge-drops-mask", "merge"), ("mask-missing", "bi"), ("mask-missing", "rnn")]
    assert found[1].message.startswith("layer 'bi' (Bidirectional) reads a padding mask but "
                                       "receives none: it was lost at layer 'merge'")
