"""model.summary(): exact rows (mask in / mask out) for several graphs, widths, totals."""
from graphmask.inspect.summary import summary
from tests.inspect import models

SEED = """\
Model: "functional"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┓
┃ Layer (type)                   ┃ Output Shape   ┃ Mask in    ┃ Mask out             ┃  Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━┩
│ input_layer (InputLayer)       │ (None, 4)      │ -          │ none                 │        0 │
├────────────────────────────────┼────────────────┼────────────┼──────────────────────┼──────────┤
│ embedding (Embedding)          │ (None, 4, 5)   │ -          │ created: ids != 0    │       25 │
├────────────────────────────────┼────────────────┼────────────┼──────────────────────┼──────────┤
│ dense (Dense)                  │ (None, 4, 3)   │ embedding  │ passed               │       18 │
└────────────────────────────────┴────────────────┴────────────┴──────────────────────┴──────────┘
 Total params: 43 (172.00 B)
 Trainable params: 43 (172.00 B)
 Non-trainable params: 0 (0.00 B)
 Mask flow:
   created by 'embedding' as ids != 0 -> passed by 'dense' -> used by the masked mse loss
"""


def rows(text):
    """Table body rows as tuples of stripped cells; wrapped cell lines are joined."""
    out, cur = [], None
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cur is None:
                cur = cells
            else:
                cur = [(a + " " + b).strip() for a, b in zip(cur, cells)]
        elif cur is not None:
            out.append(tuple(cur))
            cur = None
    return out


def test_seed_summary_exact_text():
    assert models.seed_model().summary(return_string=True) == SEED


def test_print_fn_gets_the_whole_text_once():
    got = []
    assert summary(models.seed_model(), print_fn=got.append) is None
    assert got == [SEED.rstrip("\n")]


def test_masking_lstm_dense_rows():
    assert rows(models.masking_lstm_dense().summary(return_string=True)) == [
        ("features (InputLayer)", "(None, 6, 2)", "-", "none", "0"),
        ("masking (Masking)", "(None, 6, 2)", "-", "created: any(x != -1.0)", "0"),
        ("lstm (LSTM)", "(None, 6, 4)", "masking", "used + passed", "112"),
        ("dense (Dense)", "(None, 6, 1)", "masking", "passed", "5"),
    ]


def test_lstm_without_sequences_consumes_the_mask():
    text = models.lstm_last().summary(return_string=True)
    assert rows(text) == [
        ("ids (InputLayer)", "(None, 6)", "-", "none", "0"),
        ("embedding (Embedding)", "(None, 6, 3)", "-", "created: ids != 0", "27"),
        ("lstm (LSTM)", "(None, 4)", "embedding", "consumed", "128"),
        ("dense (Dense)", "(None, 1)", "-", "none", "5"),
    ]
    assert " Total params: 160 (640.00 B)" in text.splitlines()
    assert "   created by 'embedding' as ids != 0 -> consumed by 'lstm'" in text.splitlines()


def test_pooling_consumes_the_mask():
    assert rows(models.pooling().summary(return_string=True)) == [
        ("ids (InputLayer)", "(None, 6)", "-", "none", "0"),
        ("embedding (Embedding)", "(None, 6, 3)", "-", "created: ids != 0", "27"),
        ("pool (GlobalAveragePooling1D)", "(None, 3)", "embedding", "consumed", "0"),
        ("dense (Dense)", "(None, 1)", "-", "none", "4"),
    ]


def test_add_of_two_masked_embeddings_merges():
    assert rows(models.add_two().summary(return_string=True)) == [
        ("a (InputLayer)", "(None, 4)", "-", "none", "0"),
        ("b (InputLayer)", "(None, 4)", "-", "none", "0"),
        ("emb_a (Embedding)", "(None, 4, 2)", "-", "created: ids != 0", "10"),
        ("emb_b (Embedding)", "(None, 4, 2)", "-", "created: ids != 0", "10"),
        ("add (Add)", "(None, 4, 2)", "emb_a, emb_b", "merged (OR)", "0"),
        ("lstm (LSTM)", "(None, 3)", "add", "consumed", "72"),
    ]


def test_line_length_is_respected_and_rows_survive_wrapping():
    for build in (models.seed_model, models.masking_lstm_dense, models.add_two):
        for width in (80, 98):
            text = build().summary(return_string=True, line_length=width)
            table = [ln for ln in text.splitlines() if ln[:1] in "┏┃┡│├└"]
            assert {len(ln) for ln in table} == {width}
            assert all(len(ln) <= width for ln in text.splitlines())
    narrow = models.masking_lstm_dense().summary(return_string=True, line_length=80)
    assert rows(narrow)[1] == ("masking (Masking)", "(None, 6, 2)", "-",
                               "created: any(x != -1.0)", "0")


def test_non_trainable_params_are_counted():
    from graphmask import LSTM, Embedding, Input, Model
    x = Input(shape=(6,), dtype="int32")
    h = LSTM(4)(Embedding(9, 3, mask_zero=True, trainable=False)(x))
    text = Model(x, h).summary(return_string=True)
    assert " Total params: 155 (620.00 B)" in text
    assert " Trainable params: 128 (512.00 B)" in text
    assert " Non-trainable params: 27 (108.00 B)" in text
