"""Tests of the elastic supernet (utils/widths.py, supernet.py, elastic_forward.py,
importance.py, extract.py) on tiny random BERTs (CPU, no downloads)."""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import utils  # noqa: F401  (zlib before paddle)
import numpy as np
import paddle
import pytest
from paddlenlp.transformers import (BertConfig, BertForSequenceClassification, BertForTokenClassification,
                                    BertTokenizer)

from utils import elastic_forward as EF
from utils import extract as X
from utils import importance as IMP
from utils import supernet as S
from utils import widths as W
from utils.errors import UserError
from utils.modeling import load_model, save_model

TOL = 1e-5


def make_config(hidden=64, heads=4, inter=128, layers=2, labels=3, dropout=0.0):
    return BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=inter, max_position_embeddings=32, type_vocab_size=2,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=labels,
                      initializer_range=0.2)


def make_model(cls, cfg, seed):
    paddle.seed(seed)
    m = cls(cfg)
    m.eval()
    return m


def copy_of(model, cfg):
    twin = type(model)(cfg)
    twin.set_state_dict(model.state_dict())
    twin.eval()
    return twin


def diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.fixture(scope="module")
def batch():
    rs = np.random.RandomState(0)
    ids = rs.randint(5, 100, (3, 12)).astype("int64")
    ids[1, 7:] = 0   # padding (pad_token_id 0)
    ids[2, 4:] = 0
    tt = np.zeros_like(ids)
    tt[:, 6:] = 1
    return paddle.to_tensor(ids), paddle.to_tensor(tt)


@pytest.fixture(scope="module")
def cfg4():
    return make_config()


@pytest.fixture(scope="module")
def seq4(cfg4):
    return make_model(BertForSequenceClassification, cfg4, 1)


@pytest.fixture(scope="module")
def tok4(cfg4):
    return make_model(BertForTokenClassification, cfg4, 2)


@pytest.fixture(scope="module")
def cfg12():
    return make_config(hidden=96, heads=12, inter=120)


@pytest.fixture(scope="module")
def seq12(cfg12):
    return make_model(BertForSequenceClassification, cfg12, 3)


def scrambled_importance(model, seed):
    """Importance scores that are NOT in index order (so reorder must permute)."""
    rs = np.random.RandomState(seed)
    layers = model.bert.encoder.layers
    heads = int(layers[0].self_attn.num_heads)
    inter = int(layers[0].linear1.weight.shape[1])
    head_imp = np.stack([rs.permutation(heads).astype("float32") for _ in layers])
    neuron_imp = [rs.permutation(inter).astype("float32") for _ in layers]
    for row in head_imp:
        assert list(np.argsort(-row)) != list(range(heads))
    return head_imp, neuron_imp


# --------------------------------------------------------------------------- 1. forward == stock
@pytest.mark.parametrize("which", ["seq", "tok"])
def test_forward_matches_stock_paddle_forward(which, seq4, tok4, batch):
    model = seq4 if which == "seq" else tok4
    ids, tt = batch
    stock = model(ids, tt).numpy()
    ours, hidden = EF.forward(model, ids, tt, output_hidden_states=True)
    assert tuple(ours.shape) == stock.shape
    assert diff(ours.numpy(), stock) <= TOL
    assert len(hidden) == 1 + len(model.bert.encoder.layers)
    seq_out = model.bert(ids, tt)[0].numpy()
    assert diff(hidden[-1].numpy(), seq_out) <= TOL
    assert diff(EF.forward(model, ids, tt).numpy(), stock) <= TOL


def test_cpu_dropout_rate_scale_seed_and_gradient():
    x = paddle.ones([200, 500])
    x.stop_gradient = False
    EF.seed_dropout(3)
    y = EF.dropout(x, 0.1, True)
    vals = np.unique(y.numpy())
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(1 / 0.9, rel=1e-6)
    dropped = float((y.numpy() == 0).mean())
    assert abs(dropped - 0.1) < 0.005          # 100,000 draws: 5 sigma is 0.005
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())   # d(x*mask)/dx = mask
    EF.seed_dropout(3)
    np.testing.assert_array_equal(EF.dropout(x, 0.1, True).numpy(), y.numpy())
    assert not np.array_equal(EF.dropout(x, 0.1, True).numpy(), y.numpy())   # the stream moves on
    assert EF.dropout(x, 0.1, False) is x and EF.dropout(x, 0.0, True) is x
    assert float(EF.dropout(x, 1.0, True).abs().sum()) == 0.0


def test_addmm_linear_equals_the_layer_values_and_gradients(seq4):
    """utils.elastic_forward.linear (one addmm, GEMM backward) against calling the
    layer: plain nn.Linear and every super linear Block at every width."""
    widths = W.snap_widths([1.0, 0.75, 0.5, 0.25], 4, 128)
    ofa = S.build_supernet(seq4, widths)
    rs = np.random.RandomState(4)

    def run(fn, layer, x, scale):
        x = paddle.to_tensor(x, stop_gradient=False)
        leaf = S.leaf(layer)
        for p in (leaf.weight, leaf.bias):
            p.clear_gradient()
        y = fn(layer, x, scale)
        g = paddle.to_tensor(np.random.RandomState(9).randn(*y.shape).astype("float32"))
        (y * g).sum().backward()
        out = [y.numpy(), x.grad.numpy(), leaf.weight.grad.numpy(), leaf.bias.grad.numpy()]
        for p in (leaf.weight, leaf.bias):
            p.clear_gradient()
        return out

    def called(layer, x, scale):
        y = layer(x)
        return y if scale is None else y * scale

    checked = 0
    for w in widths + [None]:
        S.set_width(ofa, w)
        for name, layer in ofa.model.named_sublayers():
            leaf = S.leaf(layer)
            if leaf is layer or not name.startswith("bert.encoder"):
                continue
            n_in = int(leaf.weight.shape[0]) if "linear2" not in name and "out_proj" not in name else \
                (w.ffn if "linear2" in name and w else w.heads * 16 if w else int(leaf.weight.shape[0]))
            x = rs.randn(2, 5, n_in).astype("float32")
            for scale in (None, 0.25):
                a, b = run(EF.linear, layer, x, scale), run(called, layer, x, scale)
                for u, v in zip(a, b):
                    assert u.shape == v.shape and diff(u, v) <= 1e-5
                checked += 1
    assert checked == 5 * 2 * 12       # 5 widths x 2 scales x (2 layers x 6 linears)
    plain = paddle.nn.Linear(7, 3)
    x = rs.randn(4, 7).astype("float32")
    for u, v in zip(run(EF.linear, plain, x, 0.5), run(called, plain, x, 0.5)):
        assert diff(u, v) <= 1e-5
    S.set_width(ofa, None)


def test_train_mode_forward_drops_out_as_configured(batch):
    ids, tt = batch
    still = make_model(BertForSequenceClassification, make_config(dropout=0.0), 5)
    still.train()
    a = EF.forward(still, ids, tt).numpy()
    still.eval()
    assert diff(a, EF.forward(still, ids, tt).numpy()) == 0.0     # rate 0: no dropout anywhere
    noisy = make_model(BertForSequenceClassification, make_config(dropout=0.3), 5)
    evals = EF.forward(noisy, ids, tt).numpy()
    noisy.train()
    runs = []
    for seed in (11, 11, 12):
        EF.seed_dropout(seed)
        runs.append(EF.forward(noisy, ids, tt, output_hidden_states=True))
    noisy.eval()
    assert diff(runs[0][0].numpy(), runs[1][0].numpy()) == 0.0   # same seed, same masks
    assert diff(runs[0][0].numpy(), runs[2][0].numpy()) > 1e-4
    assert diff(runs[0][0].numpy(), evals) > 1e-4
    emb = runs[0][1][0].numpy()                                   # the embedding output is dropped too
    assert 0.2 < float((emb == 0).mean()) < 0.4


def test_forward_head_mask_and_layers(seq4, batch):
    ids, tt = batch
    L, H = 2, 4
    base = EF.forward(seq4, ids, tt).numpy()
    ones = paddle.ones([L, H])
    assert diff(EF.forward(seq4, ids, tt, head_mask=ones).numpy(), base) <= TOL
    masked = paddle.to_tensor(np.array([[1, 0, 1, 1], [1, 1, 1, 1]], dtype="float32"))
    assert diff(EF.forward(seq4, ids, tt, head_mask=masked).numpy(), base) > 1e-3
    logits, hidden = EF.forward(seq4, ids, tt, output_hidden_states=True, layers=[1])
    assert len(hidden) == 2
    assert diff(logits.numpy(), base) > 1e-3


# --------------------------------------------------------------------------- 2. width 1.0 == teacher
def test_full_width_supernet_equals_teacher(seq4, cfg4, batch):
    ids, tt = batch
    teacher_before = {k: v.numpy().copy() for k, v in seq4.state_dict().items()}
    widths = W.snap_widths([1.0, 0.5], 4, 128)
    paddle.seed(123)
    ofa = S.build_supernet(seq4, widths)
    after_build = paddle.rand([4]).numpy()
    paddle.seed(123)
    assert np.array_equal(after_build, paddle.rand([4]).numpy())   # global RNG stream not shifted
    from paddleslim.nas.ofa import OFA
    assert isinstance(ofa, OFA)
    S.set_width(ofa, widths[0])
    assert diff(EF.forward(ofa.model, ids, tt).numpy(), seq4(ids, tt).numpy()) <= TOL
    S.set_width(ofa, None)
    assert diff(EF.forward(ofa, ids, tt).numpy(), seq4(ids, tt).numpy()) <= TOL
    # the teacher stays a plain, untouched model with its own parameters
    assert type(seq4.bert.encoder.layers[0].self_attn.q_proj) is paddle.nn.Linear
    assert not set(id(p) for p in seq4.parameters()) & set(id(p) for p in ofa.parameters())
    for k, v in seq4.state_dict().items():
        assert np.array_equal(v.numpy(), teacher_before[k])


# --------------------------------------------------------------------------- 3. reorder
def test_reorder_is_function_preserving_and_permutes(seq4, cfg4, batch):
    ids, tt = batch
    model = copy_of(seq4, cfg4)
    before = model(ids, tt).numpy()
    q_before = model.bert.encoder.layers[0].self_attn.q_proj.weight.numpy().copy()
    l1_before = model.bert.encoder.layers[1].linear1.weight.numpy().copy()
    head_imp, neuron_imp = scrambled_importance(model, 5)
    IMP.reorder(model, head_imp, neuron_imp)
    assert diff(model(ids, tt).numpy(), before) <= TOL
    q_after = model.bert.encoder.layers[0].self_attn.q_proj.weight.numpy()
    hd = 16
    top = int(np.argmax(head_imp[0]))
    assert not np.array_equal(q_after, q_before)
    assert np.array_equal(q_after[:, :hd], q_before[:, top * hd:(top + 1) * hd])
    top_neuron = int(np.argmax(neuron_imp[1]))
    assert np.array_equal(model.bert.encoder.layers[1].linear1.weight.numpy()[:, 0], l1_before[:, top_neuron])

    # also on a supernet (weights live in Block.fn)
    ofa = S.build_supernet(seq4, W.snap_widths([1.0, 0.5], 4, 128))
    fn_before = ofa.model.bert.encoder.layers[0].self_attn.q_proj.fn.weight.numpy().copy()
    IMP.reorder(ofa, head_imp, neuron_imp)
    assert diff(EF.forward(ofa.model, ids, tt).numpy(), before) <= TOL
    assert not np.array_equal(ofa.model.bert.encoder.layers[0].self_attn.q_proj.fn.weight.numpy(), fn_before)


# --------------------------------------------------------------------------- 4. widths differ (PaddleSlim #781)
def test_different_widths_give_different_logits(seq4, batch):
    ids, tt = batch
    widths = W.snap_widths([1.0, 0.75, 0.5, 0.25], 4, 128)
    ofa = S.build_supernet(seq4, widths)
    outs = {}
    for w in widths:
        S.set_width(ofa, w)
        outs[w.heads] = EF.forward(ofa.model, ids, tt).numpy()
        fn = ofa.model.bert.encoder.layers[1].self_attn.q_proj.fn
        assert fn.cur_config["prune_dim"] == [64, w.heads * 16]
        assert ofa.model.bert.encoder.layers[1].linear1.fn.cur_config["prune_dim"] == [64, w.ffn]
    keys = sorted(outs)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            assert diff(outs[keys[i]], outs[keys[j]]) > 1e-3, (keys[i], keys[j])


# --------------------------------------------------------------------------- 5. extract_subnet
def _tokenizer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizer(str(path))


@pytest.mark.parametrize("case", ["4h-0.5", "4h-0.75", "12h-5/6", "4h-0.5-token"])
def test_extract_subnet_matches_supernet(case, seq4, tok4, seq12, cfg4, cfg12, batch, tmp_path):
    ids, tt = batch
    if case.startswith("12h"):
        teacher, cfg, requested, task = seq12, cfg12, "5/6", "classification"
    else:
        teacher, cfg, requested, task = (tok4 if case.endswith("token") else seq4), cfg4, case.split("-")[1], \
            ("token_classification" if case.endswith("token") else "classification")
    H, I, hidden = cfg.num_attention_heads, cfg.intermediate_size, cfg.hidden_size
    hd = hidden // H
    widths = W.snap_widths(["1", requested], H, I)
    w = widths[1]
    expected_heads = {"0.5": H // 2, "0.75": 3, "5/6": 10}[requested]
    assert w.heads == expected_heads and w.ffn == expected_heads * I // H
    ofa = S.build_supernet(teacher, widths)
    IMP.reorder(ofa, *scrambled_importance(teacher, 7))   # so that slicing order matters
    S.set_width(ofa, w)
    want = EF.forward(ofa.model, ids, tt).numpy()

    sub = X.extract_subnet(ofa.model, w, cfg, task)
    assert not hasattr(cfg, "compression_suite") or "heads_per_layer" not in cfg.compression_suite
    layer = sub.bert.encoder.layers[0]
    assert list(layer.self_attn.q_proj.weight.shape) == [hidden, w.heads * hd]
    assert list(layer.self_attn.out_proj.weight.shape) == [w.heads * hd, hidden]
    assert list(layer.linear1.weight.shape) == [hidden, w.ffn]
    assert layer.self_attn.num_heads == w.heads
    assert X.param_count(sub) < X.param_count(teacher)
    sub.eval()
    got = sub(ids, tt).numpy()   # paddle's stock forward
    assert diff(got, want) <= TOL
    assert diff(EF.forward(sub, ids, tt).numpy(), want) <= TOL

    out = tmp_path / "sub"
    save_model(sub, _tokenizer(tmp_path), str(out), info={"task_type": task})
    loaded, _, loaded_cfg = load_model(str(out))
    loaded.eval()
    assert type(loaded) is type(teacher)
    assert loaded_cfg.compression_suite["heads_per_layer"] == [w.heads] * cfg.num_hidden_layers
    assert diff(loaded(ids, tt).numpy(), want) <= TOL


def test_exact_sizes_despite_float_error(seq12, cfg12, batch):
    """SuperLinear computes int(ratio * base); the ratio set_width hands it must give
    exactly heads*head_dim / ffn columns for every width, incl. bert-base sizes."""
    class Leaf:  # the only attribute _exact_ratio reads
        def __init__(self, base):
            self.base_output_dim = base

    # the naive ratio heads/H does fail for some shapes, e.g. 15 of 22 heads of size 8:
    assert int((15 / 22) * 176) != 15 * 8
    for H, hidden, inter in [(4, 64, 128), (4, 256, 1024), (12, 96, 120), (12, 768, 3072), (16, 1024, 4096),
                             (22, 176, 352)]:
        hd = hidden // H
        for w in W.snap_widths(["5/6", "2/3", "1/2", "0.75", "0.25"], H, inter):
            for base, size in [(hidden, w.heads * hd), (inter, w.ffn)]:
                r = S._exact_ratio(Leaf(base), size, "x")
                assert int(r * base) == size
        # every head count (and its FFN size)
        for heads in range(1, H + 1):
            for base, size in [(hidden, heads * hd), (inter, heads * inter // H)]:
                r = S._exact_ratio(Leaf(base), size, "x")
                assert int(r * base) == size
    # and on a real supernet at 5/6 of 12 heads (paddlenlp's patch yields 11 heads here)
    w = W.snap_widths(["5/6"], 12, 120)[0]
    assert (w.heads, w.ffn) == (10, 100)
    ofa = S.build_supernet(seq12, [w])
    S.set_width(ofa, w)
    EF.forward(ofa.model, *batch)
    for layer in ofa.model.bert.encoder.layers:
        assert layer.self_attn.q_proj.fn.cur_config["prune_dim"] == [96, 80]
        assert layer.self_attn.v_proj.fn.cur_config["prune_dim"] == [96, 80]
        assert layer.self_attn.out_proj.fn.cur_config["prune_dim"] == [80, 96]
        assert layer.linear2.fn.cur_config["prune_dim"] == [100, 96]
        assert layer.self_attn.num_heads == 12   # never mutated


# --------------------------------------------------------------------------- 6. snapping and parsing
def test_snapping_and_parsing(caplog):
    assert W.parse_width("0.5") == 0.5
    assert W.parse_width("1/2") == 0.5
    assert W.parse_width(" 5/6 ") == 5 / 6
    assert W.parse_width("0.8333333333333334") == 5 / 6
    assert W.parse_width("1") == 1.0
    for junk in ["abc", "", "1/0", "nan", "inf", "1/2/3", "0.5x", "/2"]:
        with pytest.raises(ValueError):
            W.parse_width(junk)

    ws = W.snap_widths([0.8333], 12, 3072)
    assert (ws[0].heads, ws[0].ffn, ws[0].tag()) == (10, 2560, "0.8333")
    assert ws[0].requested == 0.8333 and ws[0].ratio == 10 / 12
    with caplog.at_level(logging.WARNING, logger="bert_suite"):
        ws = W.snap_widths(["1.0", "5/6", 0.8333, "0.5"], 12, 3072)
    assert [w.heads for w in ws] == [12, 10, 6]
    assert any("snaps to 10/12 heads" in r.getMessage() for r in caplog.records)
    assert W.snap_widths(["2/3"], 4, 128)[0].heads == 3     # round(2.67) = 3 -> 0.75

    for bad, words in [([], "no width"), ([0], "> 0"), ([-1], "> 0"), ([1.5], "larger than 1"),
                       (["zero"], "not a number")]:
        with pytest.raises(UserError) as e:
            W.snap_widths(bad, 4, 128)
        assert "--width_mult_list" in str(e.value) and words in str(e.value)
    with pytest.raises(UserError) as e:
        W.snap_widths([1.0, 0.1], 4, 128, flag="--widths")
    assert "--widths" in str(e.value) and "0.1" in str(e.value) and "0 of 4" in str(e.value)


# --------------------------------------------------------------------------- 7. importance
def upstream_cumulative_importance(model, batches, loss_fn):
    """PaddleNLP's variant of compute_importance: the gradients accumulate
    across batches, so batch t contributes |g_1 + ... + g_t|."""
    layers = model.bert.encoder.layers
    params = IMP.ffn_params(layers)
    head_imp = np.zeros([len(layers), int(layers[0].self_attn.num_heads)])
    neuron_imp = [np.zeros([int(w.shape[1])]) for w in params[0]]
    cum = None
    for grads in IMP.batch_gradients(model, batches, loss_fn):
        cum = grads if cum is None else [c + g for c, g in zip(cum, grads)]
        IMP.add_importance(head_imp, neuron_imp, cum, params)
    return head_imp.astype(np.float32), [n.astype(np.float32) for n in neuron_imp]


def test_compute_importance_clears_gradients_and_restores_mode(cfg4, batch):
    ids, tt = batch
    cfg = make_config(dropout=0.3)
    model = make_model(BertForSequenceClassification, cfg, 11)
    model.train()
    labels = paddle.to_tensor(np.array([0, 1, 2], dtype="int64"))
    loss_fn = paddle.nn.CrossEntropyLoss()
    # stale gradients from an earlier backward must not survive either
    loss_fn(model(ids, tt), labels).backward()
    assert any(p.grad is not None for p in model.parameters())
    batches = [(ids, tt, labels), (ids[:2], tt[:2], labels[:2])]

    head_imp, neuron_imp = IMP.compute_importance(model, batches, loss_fn, num_layers=2, num_heads=4)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(m.training for m in model.sublayers())
    assert head_imp.shape == (2, 4) and np.abs(head_imp).sum() > 0
    assert len(neuron_imp) == 2 and all(n.shape == (128,) and n.sum() > 0 for n in neuron_imp)
    # eval mode during importance: dropout 0.3 would make a second run differ
    again = IMP.compute_importance(model, batches, loss_fn)
    assert np.allclose(again[0], head_imp) and all(np.allclose(a, b) for a, b in zip(again[1], neuron_imp))

    # the formula, checked against a plain backward on one batch
    model.eval()
    head_mask = paddle.ones([2, 4])
    head_mask.stop_gradient = False
    loss_fn(EF.forward(model, ids, tt, head_mask=head_mask), labels).backward()
    layer = model.bert.encoder.layers[1]
    w1, b1, w2 = layer.linear1.weight, layer.linear1.bias, layer.linear2.weight
    want = np.abs((w1.numpy() * w1.grad.numpy()).sum(0) + b1.numpy() * b1.grad.numpy()) + \
        np.abs((w2.numpy() * w2.grad.numpy()).sum(1))
    one_h, one_n = IMP.compute_importance(model, batches[:1], loss_fn)
    assert np.allclose(one_h, np.abs(head_mask.grad.numpy()), rtol=1e-4, atol=1e-7)
    assert np.allclose(one_n[1], want, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    # per-batch gradients: importance over two batches = sum of the single-batch importances
    two_h, two_n = IMP.compute_importance(model, batches[1:], loss_fn)
    assert np.allclose(head_imp, one_h + two_h, rtol=1e-4, atol=1e-7)
    assert np.allclose(neuron_imp[0], one_n[0] + two_n[0], rtol=1e-4, atol=1e-7)
    # upstream's cumulative variant: batch 2 contributes |g1 + g2|
    up_h, _ = upstream_cumulative_importance(model, batches, loss_fn)
    assert not np.allclose(up_h, head_imp)
    assert np.all(up_h >= one_h - 1e-7)


def test_compute_importance_on_supernet_runs_full_width(seq4, batch):
    ids, tt = batch
    widths = W.snap_widths([1.0, 0.5], 4, 128)
    ofa = S.build_supernet(seq4, widths)
    labels = paddle.to_tensor(np.array([0, 1, 2], dtype="int64"))
    loss_fn = paddle.nn.CrossEntropyLoss()
    plain = IMP.compute_importance(seq4, [(ids, tt, labels)], loss_fn)
    S.set_width(ofa, widths[1])
    config = ofa.current_config
    sup = IMP.compute_importance(ofa, [(ids, tt, labels)], loss_fn)
    assert ofa.current_config is config            # selection restored
    assert np.allclose(sup[0], plain[0], rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in ofa.parameters())


# --------------------------------------------------------------------------- 8. gradients only on the slice
def test_training_step_at_half_width_touches_only_the_slice(seq4, batch):
    ids, tt = batch
    widths = W.snap_widths([1.0, 0.5], 4, 128)
    ofa = S.build_supernet(seq4, widths)
    ofa.model.train()
    S.set_width(ofa, widths[1])
    labels = paddle.to_tensor(np.array([0, 1, 2], dtype="int64"))
    loss = paddle.nn.CrossEntropyLoss()(EF.forward(ofa.model, ids, tt), labels)
    loss.backward()
    kept_q, kept_ffn = widths[1].heads * 16, widths[1].ffn
    for layer in ofa.model.bert.encoder.layers:
        for proj in ("q_proj", "k_proj", "v_proj"):
            fn = getattr(layer.self_attn, proj).fn
            g, gb = fn.weight.grad.numpy(), fn.bias.grad.numpy()
            assert np.all(g[:, kept_q:] == 0) and np.all(gb[kept_q:] == 0), proj
            assert np.abs(g[:, :kept_q]).sum() > 0, proj
        g = layer.self_attn.out_proj.fn.weight.grad.numpy()
        assert np.all(g[kept_q:, :] == 0) and np.abs(g[:kept_q, :]).sum() > 0
        g = layer.linear1.fn.weight.grad.numpy()
        assert np.all(g[:, kept_ffn:] == 0) and np.abs(g[:, :kept_ffn]).sum() > 0
        g = layer.linear2.fn.weight.grad.numpy()
        assert np.all(g[kept_ffn:, :] == 0) and np.abs(g[:kept_ffn, :]).sum() > 0
    IMP.clear_gradients(ofa)
    assert all(p.grad is None for p in ofa.parameters())


def test_depth_layers_via_set_width(seq4, batch):
    ids, tt = batch
    widths = W.snap_widths([1.0], 4, 128)
    ofa = S.build_supernet(seq4, widths)
    S.set_width(ofa, widths[0], depth_layers=[1])
    logits, hidden = EF.forward(ofa.model, ids, tt, output_hidden_states=True)
    assert len(hidden) == 2
    assert diff(logits.numpy(), EF.forward(seq4, ids, tt, layers=[1]).numpy()) <= TOL
    with pytest.raises(ValueError):
        S.set_width(ofa, widths[0], depth_layers=[2])


# --------------------------------------------------------------------------- 9. stride kernels
def test_stride_kernels_are_off_and_the_toggle_restores_them():
    """compat fix 5 turns paddle's stride kernels off; compat.stride_kernels
    turns them on within a block (stock_ops uses it) and restores them."""
    from utils import compat

    def flag():
        return paddle.get_flags(["FLAGS_use_stride_kernel"])["FLAGS_use_stride_kernel"]

    assert flag() is False
    with compat.stride_kernels(True):
        assert flag() is True
        with EF.stock_ops():
            assert flag() is True and not any(EF._FAST.values())
        assert flag() is True
    assert flag() is False and all(EF._FAST.values())
