"""Checkpoint safety, batch order, optimizer set-up, and supernets of the
BERT shapes users bring (nothing assumes 12 layers or hidden 768)."""
import os

import numpy as np
import pytest

from utils import checkpoint, parallel, training


OPT = dict(learning_rate=1e-3, warmup_proportion=0.1, weight_decay=0.01, max_grad_norm=1.0)


def _model():
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from helpers import tiny_config
    paddle.seed(0)
    return BertForSequenceClassification(BertConfig(**tiny_config()))


def test_a_crash_while_saving_never_leaves_a_corrupt_latest(tmp_path, monkeypatch):
    import paddle
    model = _model()
    opt, sched = training.build_optimizer(model, 10, **OPT)
    checkpoint.save_checkpoint(str(tmp_path), 5, model, opt, sched, {"epoch": 0, "stage": {"best": 1}})
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    for p in model.parameters():  # change the weights, then crash in the middle of the next save
        p.set_value(p.numpy() + 1.0)
    real_save = paddle.save

    def dying_save(obj, path, *a, **k):
        if path.endswith(".pdopt"):
            raise OSError("disk full")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(paddle, "save", dying_save)
    with pytest.raises(OSError):
        checkpoint.save_checkpoint(str(tmp_path), 10, model, opt, sched, {"epoch": 1, "stage": {}})
    monkeypatch.setattr(paddle, "save", real_save)
    assert open(tmp_path / "checkpoints" / "latest").read() == "step-5"
    fresh = _model()
    for p in fresh.parameters():
        p.set_value(p.numpy() * 0)
    opt2, sched2 = training.build_optimizer(fresh, 10, **OPT)
    state = checkpoint.load_checkpoint(str(tmp_path), fresh, opt2, sched2)
    assert state["step"] == 5 and state["stage"] == {"best": 1}
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    # the next successful save replaces the half-written one and prunes the old one
    checkpoint.save_checkpoint(str(tmp_path), 10, model, opt, sched, {"epoch": 1, "stage": {}})
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["latest", "step-10"]


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    """set_state_dict alone would skip the misfitting tensors with a warning."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from helpers import tiny_config
    from utils.errors import UserError
    model = _model()
    opt, sched = training.build_optimizer(model, 10, **OPT)
    checkpoint.save_checkpoint(str(tmp_path), 5, model, opt, sched, {"epoch": 0})
    paddle.seed(1)
    other = BertForSequenceClassification(BertConfig(**tiny_config(intermediate_size=48)))
    before = {k: v.numpy().copy() for k, v in other.state_dict().items()}
    opt2, sched2 = training.build_optimizer(other, 10, **OPT)
    with pytest.raises(UserError, match=r"another model.*linear1\.\w+ is \[.*\] there but \[.*48\] here"):
        checkpoint.load_checkpoint(str(tmp_path), other, opt2, sched2)
    assert all(np.array_equal(before[k], v.numpy()) for k, v in other.state_dict().items())
    # the same model resumes
    same = _model()
    assert checkpoint.load_checkpoint(str(tmp_path), same, *training.build_optimizer(same, 10, **OPT))["step"] == 5


def test_epoch_batches_are_seeded_permutations_covering_the_data():
    a = parallel.epoch_batches(50, 8, epoch=0, seed=1)
    b = parallel.epoch_batches(50, 8, epoch=0, seed=1)
    c = parallel.epoch_batches(50, 8, epoch=1, seed=1)
    assert a == b and a != c
    assert sorted(i for batch in a for i in batch) == list(range(50))
    assert [len(x) for x in a] == [8] * 6 + [2]


def test_grouped_batches_cover_the_same_examples_with_less_padding():
    rng = np.random.RandomState(0)
    lengths = rng.randint(3, 65, size=1003)
    plain = parallel.epoch_batches(1003, 16, epoch=0, seed=1)
    grouped = parallel.epoch_batches(1003, 16, epoch=0, seed=1, lengths=lengths)
    assert grouped == parallel.epoch_batches(1003, 16, epoch=0, seed=1, lengths=lengths)   # seeded
    assert grouped != parallel.epoch_batches(1003, 16, epoch=1, seed=1, lengths=lengths)
    assert sorted(i for b in grouped for i in b) == list(range(1003))
    assert [len(b) for b in grouped] == [len(b) for b in plain] == [16] * 62 + [11]

    def padded(batches):   # positions computed when each batch is padded to its longest example
        return sum(len(b) * lengths[b].max() for b in batches)
    assert padded(grouped) < 0.6 * padded(plain), (padded(grouped), padded(plain), lengths.sum())
    # the batches are not in length order (a window's batches go from long to short before the shuffle)
    firsts = [lengths[b].max() for b in grouped[:-1]]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)


def test_evaluation_batches_by_length_and_returns_outputs_in_feature_order():
    from utils.evaluation import predict
    from utils.ner_encode import collate_ner
    rng = np.random.RandomState(0)
    feats = []
    for n in rng.randint(3, 40, size=101):
        ids = rng.randint(5, 100, size=n).tolist()
        feats.append({"input_ids": ids, "token_type_ids": [0] * n, "labels": [i % 7 for i in ids]})
    widths = []

    def forward(ids, seg):   # a row's logits depend on its own tokens only; padding positions are zeros
        x = ids.numpy()
        widths.append(x.shape[1])
        import paddle
        return paddle.to_tensor(np.eye(7, dtype="float32")[x % 7] * (x != 0)[..., None])

    logits, labels = predict(forward, feats, lambda fs: collate_ner(fs, 0), 8)
    assert logits.shape == (101, 39, 7) and labels.shape == (101, 39)
    for i, f in enumerate(feats):   # in feature order: each row is its own feature's
        n = len(f["input_ids"])
        assert logits[i, :n].argmax(-1).tolist() == [t % 7 for t in f["input_ids"]]
        assert not logits[i, n:].any() and labels[i, :n].tolist() == f["labels"] and (labels[i, n:] == -100).all()
    lengths = np.array([len(f["input_ids"]) for f in feats])
    plain = sum(lengths[i:i + 8].max() * len(lengths[i:i + 8]) for i in range(0, 101, 8))
    computed = sum(w * 8 for w in widths[:-1]) + widths[-1] * (101 % 8 or 8)
    assert widths == sorted(widths) and computed < 0.75 * plain, (computed, plain)


def test_the_training_loop_batches_by_length_when_asked(tmp_path):
    """training.train with group_by_length hands the stage like-length
    batches; without it, the plain seeded batches."""
    import paddle
    from utils.train_args import add_common_args, loop_settings
    rng = np.random.RandomState(0)
    feats = [{"input_ids": [1] * int(n)} for n in rng.randint(3, 65, size=320)]

    class Record(training.Stage):
        def __init__(self):
            self.spans = []

        def step(self, batch, step):
            lens = [len(f["input_ids"]) for f in batch]
            self.spans.append(max(lens) - min(lens))
            return paddle.to_tensor(0.0)

        def evaluate(self, step, epoch):
            pass
    spans = {}
    for flag in ([], ["--group_by_length"]):
        import argparse
        p = argparse.ArgumentParser()
        add_common_args(p)
        args = p.parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path / str(len(flag))),
                             "--save_steps", "100", *flag])
        stage, model = Record(), _model()
        opt, sched = training.build_optimizer(model, 20, **OPT)
        kw = dict(loop_settings(args), output_dir=str(tmp_path / str(len(flag))))
        assert kw["group_by_length"] == bool(flag)
        training.train(stage, model, opt, sched, feats, lambda fs: fs, 20, 10, **kw)   # 2 epochs of 10 batches
        spans[bool(flag)] = np.mean(stage.spans)
    assert spans[True] < 0.2 * spans[False], spans


def test_epoch_batches_split_by_rank(monkeypatch):
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    monkeypatch.setenv("PADDLE_TRAINER_ID", "0")
    r0 = parallel.epoch_batches(9, 2, 0, 3)
    monkeypatch.setenv("PADDLE_TRAINER_ID", "1")
    r1 = parallel.epoch_batches(9, 2, 0, 3)
    seen = [i for b in r0 + r1 for i in b]
    assert len(seen) == 10 and set(seen) == set(range(9))  # padded to a multiple of the world size
    assert len(r0) == len(r1)


def test_optimizer_decays_weights_but_not_biases_or_norms_and_clips():
    model = _model()
    opt, sched = training.build_optimizer(model, 100, **OPT)
    decayed = {p.name for n, p in model.named_parameters() if opt._apply_decay_param_fun(p.name)}
    names = {p.name: n for n, p in model.named_parameters()}
    assert decayed and all("bias" not in names[p] and "norm" not in names[p] for p in decayed)
    assert any("q_proj.weight" in names[p] for p in decayed)
    assert opt._grad_clip is not None and opt._grad_clip.clip_norm == 1.0
    # warm-up: 10% of 100 steps
    lrs = []
    for _ in range(12):
        lrs.append(opt.get_lr())
        sched.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(1e-3) and lrs[11] < 1e-3


@pytest.mark.parametrize("shape", [
    dict(num_hidden_layers=4, hidden_size=312, num_attention_heads=12, intermediate_size=1200),   # TinyBERT
    dict(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536),   # MiniLM-L6
    dict(num_hidden_layers=3, hidden_size=96, num_attention_heads=6, intermediate_size=200),
])
def test_supernet_of_any_bert_shape_equals_teacher_and_exports_exactly(shape):
    import paddle
    from paddlenlp.transformers import BertConfig, BertForSequenceClassification
    from utils.elastic_forward import forward
    from utils.extract import extract_subnet
    from utils.supernet import build_supernet, set_width
    from utils.widths import snap_widths
    paddle.seed(0)
    cfg = BertConfig(vocab_size=120, max_position_embeddings=40, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, num_labels=3, **shape)
    teacher = BertForSequenceClassification(cfg)
    teacher.eval()
    widths = snap_widths(["1.0", "5/6", "1/2"], cfg.num_attention_heads, cfg.intermediate_size)
    assert [w.heads for w in widths] == [cfg.num_attention_heads, round(cfg.num_attention_heads * 5 / 6),
                                         cfg.num_attention_heads // 2]
    ofa = build_supernet(teacher, widths)
    ofa.model.eval()
    rng = np.random.RandomState(0)
    ids = paddle.to_tensor(rng.randint(5, 120, size=(3, 16)).astype("int64"))
    seg = paddle.zeros_like(ids)
    with paddle.no_grad():
        ref = teacher(ids, token_type_ids=seg).numpy()
        outs = []
        for w in widths:
            set_width(ofa, w)
            sup = forward(ofa.model, ids, seg).numpy()
            sub = extract_subnet(ofa.model, w, cfg, "classification")
            sub.eval()
            np.testing.assert_allclose(sub(ids, token_type_ids=seg).numpy(), sup, atol=1e-5)
            q = sub.bert.encoder.layers[0].self_attn.q_proj.weight
            assert q.shape == [cfg.hidden_size, w.heads * (cfg.hidden_size // cfg.num_attention_heads)]
            outs.append(sup)
    np.testing.assert_allclose(outs[0], ref, atol=1e-5)
    assert np.abs(outs[0] - outs[2]).max() > 1e-4


def test_a_resume_must_give_the_flags_its_run_started_with(tmp_path):
    from utils.errors import UserError
    from utils.publish import write_json_atomic
    from utils.runs import check_resume_args
    data = tmp_path / "data"
    data.mkdir()
    start = {"data_dir": str(data), "seed": 42, "group_by_length": False, "learning_rate": 2e-4,
             "max_steps": 1000, "save_steps": 100, "output_dir": "run"}
    write_json_atomic(str(tmp_path / "args.json"), start)
    # how long and how it reports may change; the same data dir spelled another way is the same
    check_resume_args(str(tmp_path), dict(start, max_steps=500, save_steps=50, data_dir=str(data) + "/."))
    with pytest.raises(UserError) as e:
        check_resume_args(str(tmp_path), dict(start, seed=7, group_by_length=True))
    assert "--group_by_length False there, True now; --seed 42 there, 7 now" in str(e.value)
    assert str(tmp_path / "args.json") in str(e.value)
    check_resume_args(str(tmp_path / "none"), dict(start, seed=7))     # no record: nothing to hold it to
    # a flag the record does not know (an older run) is not held against it
    check_resume_args(str(tmp_path), dict(start, new_flag=1))


@pytest.mark.parametrize("kind", ["classification", "token_classification"])
def test_fine_tuning_runs_the_suites_forward_and_scores_as_the_models_own(kind, monkeypatch):
    """FineTuneStage trains and evaluates through utils.elastic_forward (its
    CPU fast paths: addmm linear layers, numpy dropout; 1.22x a training step
    of the Chinese RoBERTa): in eval mode the logits equal the model's own
    forward, a training step's gradients equal the model's own with dropout
    off, and a layer the suite's forward does not know runs its own forward."""
    import paddle
    from paddlenlp.transformers import BertConfig
    from utils import elastic_forward, finetune
    from paddle.nn.functional import cross_entropy
    from utils.losses import token_loss
    from utils.modeling import model_class
    paddle.seed(0)
    cfg = BertConfig(vocab_size=120, max_position_embeddings=40, hidden_size=64, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=96, num_labels=3, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = model_class(kind)(cfg)
    rng = np.random.RandomState(0)
    ids = paddle.to_tensor(rng.randint(5, 120, size=(3, 12)).astype("int64"))
    ids[0, 9:] = 0   # padding
    seg = paddle.zeros_like(ids)
    labels = paddle.to_tensor(rng.randint(0, 3, size=(3, 12) if kind == "token_classification" else (3,))
                              .astype("int64"))
    loss = token_loss if kind == "token_classification" else cross_entropy
    calls = []
    real = elastic_forward.forward
    monkeypatch.setattr(elastic_forward, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))

    stage = finetune.FineTuneStage(model, None, loss, None, {}, {}, None, "unused", 3)
    model.train()
    stage.step((ids, seg, labels), 0)
    fast = {p.name: p.grad.numpy().copy() for p in model.parameters() if p.grad is not None}
    assert calls, "the training step did not run utils.elastic_forward"
    model.clear_gradients()
    loss(model(ids, token_type_ids=seg), labels).backward()
    own = {p.name: p.grad.numpy() for p in model.parameters() if p.grad is not None}
    assert fast.keys() == own.keys() and len(own) > 10
    for name in own:
        np.testing.assert_allclose(fast[name], own[name], rtol=1e-4, atol=1e-6, err_msg=name)

    model.eval()
    n = len(calls)
    with paddle.no_grad():
        np.testing.assert_allclose(elastic_forward.model_forward(model)(ids, seg).numpy(),
                                   model(ids, token_type_ids=seg).numpy(), atol=1e-5)
    assert len(calls) == n + 1

    class Other(paddle.nn.Layer):
        def forward(self, input_ids, token_type_ids=None):
            return input_ids * 2
    assert elastic_forward.model_forward(Other())(ids, seg).numpy().tolist() == (ids * 2).numpy().tolist()
    assert len(calls) == n + 1
