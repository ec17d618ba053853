"""Quantization-aware distillation before post-training quantization
(``quantize.py --qat_steps N``).

Quantization of a BERT spreads its prediction flips over many ops (README
7a: keeping the 8 most sensitive ops FP32 did no better than 4),
so no choice of ops to keep FP32 brings the INT8 model to 99% agreement.
Here the FP32 weights are fine-tuned first, so that the model *with every
quantized op simulated* reproduces the unchanged FP32 model:

* :class:`FakeQuant` quantizes, in the dynamic-graph forward of
  :mod:`utils.elastic_forward`, the inputs PaddleSlim's quantizer quantizes in
  the static program: the input and the weight of every encoder Linear (q, k,
  v, out, ffn1, ffn2) and both operands of the two attention products
  (scores, context); symmetric 8 bits (-127..127).  Weights take their
  current abs max (per output channel, or per tensor for the ``abs_max``
  weight type); an activation takes a fixed scale, the recipe's percentile
  of |x| over the calibration batches (``hist``'s rule; ``abs_max`` is the
  100th percentile; the other algorithms are approximated by ``hist`` at
  --hist_percent).  Ops kept FP32 are not simulated.
* Gradients pass straight through the rounding (and are zero where an
  activation is clipped).
* The loss is the distillation loss against the unchanged FP32 model: the
  soft cross-entropy of its predictions (per real token for NER), MSE for
  regression, binary cross-entropy of its probabilities for multilabel.  The
  texts are the calibration source (the training split or
  --calibration_file, labels unused) minus every text the guard or the
  search reads.
* The tuned weights are exported and quantized by the usual post-training
  path with the same recipe, and the guard compares the INT8 model with the
  *original* FP32 model (``--model_prefix``), so the tuning can only pass the
  guard by agreeing with it.
* The tuning checkpoints itself (:class:`Checkpoints`: weights, optimizer,
  schedule, the order of the batches, the losses) into ``OUTPUT_PREFIX.qat/``
  every ``--qat_save_steps``; ``quantize.py --resume`` continues an
  interrupted run from there and ends with the weights an uninterrupted run
  ends with.
"""
import logging
import os
import time

import numpy as np

logger = logging.getLogger("bert_suite")

QMAX = 127.0
ROLES = ("q", "k", "v", "out", "ffn1", "ffn2")   # the Linear sites; scores and context are the products


def fake_quant(x, scale):
    """Symmetric 8-bit quantize-dequantize of ``x`` at ``scale`` (a float or
    a tensor broadcasting against ``x``): values beyond +-scale clip; the
    gradient is the identity inside the range and zero outside (straight
    through the rounding)."""
    import paddle
    clipped = paddle.clip(x, -scale, scale) if isinstance(scale, float) else \
        paddle.maximum(paddle.minimum(x, scale), -scale)
    q = paddle.round(clipped * (QMAX / scale)) * (scale / QMAX)
    return clipped + (q - clipped).detach()


class _TopValues:
    """The largest |x| seen at one site, enough of them for a percentile over
    every batch: each batch keeps its top ``ceil((1-p) n_batches n) + 1``
    values, which always holds the global top ``(1-p) N``."""

    def __init__(self, percent, n_batches):
        self.percent, self.n_batches = percent, n_batches
        self.values, self.count = [], 0

    def add(self, arr):
        a = np.abs(arr.reshape(-1))
        self.count += a.size
        k = min(a.size, int(np.ceil((1.0 - self.percent) * a.size * self.n_batches)) + 1)
        self.values.append(np.partition(a, a.size - k)[a.size - k:] if k < a.size else a)

    def threshold(self):
        """The smallest t with at least ``percent`` of all values <= t."""
        top = np.sort(np.concatenate(self.values))[::-1]
        rank = int(np.floor((1.0 - self.percent) * self.count + 1e-6))   # 1e-6: 1 - 0.9999 is a hair under 1e-4
        return float(max(top[min(rank, len(top) - 1)], 1e-8))


class FakeQuant:
    """The quantization simulation of one plain (non-supernet) model: its
    sites, their activation scales, and the two hooks
    :mod:`utils.elastic_forward` calls (:meth:`linear`, :meth:`act`).
    ``observe`` mode records |x| for the scales instead of quantizing."""

    def __init__(self, model, percent=0.9999, per_channel=True, fp32_sites=()):
        import paddle
        from .supernet import network
        self.percent, self.per_channel = float(percent), per_channel
        self.names, self.scales, self.observers = {}, {}, None
        layers = network(model).bert.encoder.layers
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            mods = (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, layer.linear1, layer.linear2)
            for role, m in zip(ROLES, mods):
                if type(m) is not paddle.nn.Linear:
                    raise TypeError(f"quantization-aware distillation needs a plain model (an export), not a "
                                    f"supernet: L{i}.{role} is a {type(m).__name__}")
                if f"L{i}.{role}" not in fp32_sites:
                    self.names[id(m)] = f"L{i}.{role}"
            self.names[id(attn)] = f"L{i}"
        self.fp32_sites = set(fp32_sites)

    def site_of(self, module):
        return self.names.get(id(module))

    # ------------------------------------------------------------------ calibration
    def observe(self, n_batches):
        self.observers = {}
        self._n_batches = n_batches

    def finish_observing(self):
        self.scales = {k: o.threshold() for k, o in self.observers.items()}
        self.observers = None
        return self.scales

    # ------------------------------------------------------------------ the hooks
    def act(self, site, x, operand=0):
        if site in self.fp32_sites:
            return x
        key = (site, operand)
        if self.observers is not None:
            obs = self.observers.setdefault(key, _TopValues(self.percent, self._n_batches))
            obs.add(x.numpy())
            return x
        return fake_quant(x, self.scales[key])

    def weight(self, w):
        import paddle
        if self.observers is not None:
            return w
        if self.per_channel:   # [in, out]: one scale per output column
            scale = paddle.clip(paddle.max(paddle.abs(w), axis=0, keepdim=True), min=1e-8).detach()
        else:
            scale = float(max(float(paddle.max(paddle.abs(w))), 1e-8))
        return fake_quant(w, scale)

    def linear(self, layer, x, scale=None):
        import paddle
        site = self.site_of(layer)
        y = paddle.matmul(self.act(site, x), self.weight(layer.weight))
        if layer.bias is not None:
            y = y + layer.bias
        return y if scale is None else y * scale


def forward(model, ids, seg, sim=None):
    """Logits of ``model`` on numpy batches, fake-quantized by ``sim`` if given."""
    import paddle
    from .elastic_forward import forward as elastic_forward
    from .elastic_forward import simulated
    ids, seg = paddle.to_tensor(ids), paddle.to_tensor(seg)
    if sim is None:
        return elastic_forward(model, ids, seg)
    with simulated(sim):
        return elastic_forward(model, ids, seg)


def calibrate(sim, model, batches):
    """The activation scales of ``sim`` from ``batches`` [(ids, seg)]."""
    import paddle
    sim.observe(len(batches))
    with paddle.no_grad():
        for ids, seg in batches:
            forward(model, ids, seg, sim)
    return sim.finish_observing()


def divergence(kind, student, teacher, ids, pad_id):
    """Share of changed predictions (classification, NER: of real tokens) or
    the mean |difference| (regression, multilabel logits), as numpy."""
    s, t = student.numpy(), teacher.numpy()
    if kind in ("regression", "multilabel"):
        return float(np.abs(s - t).mean())
    flips = s.argmax(-1) != t.argmax(-1)
    if kind == "token_classification":
        real = ids != pad_id
        return float(flips[real].mean())
    return float(flips.mean())


def measure(kind, student, teacher, sim, batches, pad_id):
    """Mean :func:`divergence` of the simulated student from the teacher over ``batches``."""
    import paddle
    vals = []
    with paddle.no_grad():
        for ids, seg in batches:
            vals.append(divergence(kind, forward(student, ids, seg, sim), forward(teacher, ids, seg), ids, pad_id))
    return float(np.mean(vals))


CHECKPOINT_SUFFIX = ".qat"


def checkpoint_dir(output_prefix):
    """Where quantize.py keeps the tuning's checkpoints and its run record."""
    return os.path.abspath(output_prefix) + CHECKPOINT_SUFFIX


class Checkpoints:
    """Crash-safe checkpoints of the tuning in ``root`` (utils/checkpoint.py's
    layout: ``checkpoints/step-N`` and ``checkpoints/latest``), every
    ``save_steps`` steps and at the last; ``resume``: start from the latest.
    ``exit_after``: a test hook, the process dies right after that step's
    checkpoint."""

    def __init__(self, root, save_steps, resume=False, exit_after=-1, record=None):
        self.root, self.save_steps, self.resume, self.exit_after = root, save_steps, resume, exit_after
        self.record = record

    def begin(self):
        """Write the run's ``record`` (quantize.py's run.json) before the
        first step, once every input check has passed: a resume needs it even
        before the first checkpoint."""
        from .publish import write_json_atomic
        if self.record is not None and not self.resume:
            os.makedirs(self.root, exist_ok=True)
            write_json_atomic(os.path.join(self.root, self.record[0]), self.record[1])

    def load(self, model, optimizer, scheduler):
        from .checkpoint import load_checkpoint
        if not self.resume:
            return None
        state = load_checkpoint(self.root, model, optimizer, scheduler)
        if state is None:
            logger.warning("--resume: no checkpoint of the tuning in %s, starting from step 0", self.root)
        return state

    def after_step(self, step, steps, model, optimizer, scheduler, state):
        from .checkpoint import save_checkpoint
        if step % self.save_steps == 0 or step == steps:
            save_checkpoint(self.root, step, model, optimizer, scheduler, state)
            if step == self.exit_after:
                import sys
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(3)


def _rng_state(rng):
    name, keys, pos, has_gauss, cached = rng.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_rng_state(rng, state):
    name, keys, pos, has_gauss, cached = state
    rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def train(student, teacher, sim, batches, kind, pad_id, steps, learning_rate, seed=0, eval_batches=None,
          checkpoints=None):
    """``steps`` AdamW steps (10% warm-up, linear decay) of the simulated
    student towards the teacher, cycling over ``batches`` in a seeded order.
    Returns the record: losses and the simulated divergence before and after
    on ``eval_batches``.  ``checkpoints``: a :class:`Checkpoints` to save to
    and, if it resumes, to continue from."""
    import paddle
    from tqdm import tqdm
    from .losses import logit_loss
    from .training import build_optimizer
    student.eval()   # no dropout: the student must reproduce the teacher's deterministic outputs
    teacher.eval()
    # the embeddings stay FP32 in the INT8 model: nothing to adapt there, and their
    # gradient (a vocabulary-sized matrix) would be most of the optimizer's work
    params = []
    for name, p in student.named_parameters():
        p.stop_gradient = "embeddings" in name
        if not p.stop_gradient:
            params.append(p)
    optimizer, scheduler = build_optimizer(student, steps, learning_rate, warmup_proportion=0.1, parameters=params)
    rng = np.random.RandomState(seed)
    eval_batches = eval_batches or batches[:8]
    state = checkpoints.load(student, optimizer, scheduler) if checkpoints else None
    if state is None:
        step, losses, order = 0, [], []
        before = measure(kind, student, teacher, sim, eval_batches, pad_id)
    else:
        step, losses, order, before = state["step"], state["losses"], state["order"], state["before"]
        _set_rng_state(rng, state["rng"])
        logger.info("quantization-aware distillation: resumed from step %d of %d", step, steps)
    start, targets, t0 = step, {}, time.time()
    bar = tqdm(total=steps, initial=step, desc="qat", dynamic_ncols=True, mininterval=5)
    while step < steps:
        if not order:
            order = [int(i) for i in rng.permutation(len(batches))]
        b = order.pop()
        ids, seg = batches[b]
        if b not in targets:   # the teacher is fixed and runs without dropout: once per batch
            with paddle.no_grad():
                targets[b] = forward(teacher, ids, seg)
        loss = logit_loss(forward(student, ids, seg, sim), targets[b], kind, paddle.to_tensor(ids) != pad_id)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.clear_grad()
        losses.append(float(loss))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if checkpoints:
            checkpoints.after_step(step, steps, student, optimizer, scheduler,
                                   {"losses": losses, "order": order, "before": before, "rng": _rng_state(rng)})
    bar.close()
    after = measure(kind, student, teacher, sim, eval_batches, pad_id)
    logger.info("quantization-aware distillation: %d steps in %.0f s; simulated divergence from FP32 on %d "
                "training texts %.4f -> %.4f", steps - start, time.time() - t0,
                sum(len(b[0]) for b in eval_batches), before, after)
    return {"steps": steps, "learning_rate": learning_rate, "seconds": time.time() - t0, "resumed_from": start,
            "loss_first": float(np.mean(losses[:20])) if losses else None,
            "loss_last": float(np.mean(losses[-20:])) if losses else None,
            "simulated_divergence_before": before, "simulated_divergence_after": after,
            "eval_texts": int(sum(len(b[0]) for b in eval_batches))}


def tune(model_dir, fp32_predictor, data, recipe, fp32_sites, out_prefix, *, steps, learning_rate, batch_size,
         seed=0, checkpoints=None):
    """Quantization-aware distillation of the dynamic-graph model in
    ``model_dir`` (the sub-model export_model.py wrote with the static
    ``fp32_predictor``'s model), written as a static model at ``out_prefix``.
    ``data``: quantize.py's :class:`utils.quant_eval.QuantData`.  Returns the
    record for the info file."""
    import paddle
    from .errors import UserError
    from .inference import run_predictor, save_static
    from .modeling import load_model
    teacher, tokenizer, _ = load_model(model_dir, flag="--qat_model")
    student, _, _ = load_model(model_dir, flag="--qat_model")
    pad_id = tokenizer.pad_token_id
    calib = data.calibration_batches(recipe["batch_num"], batch_size)
    teacher.eval()
    with paddle.no_grad():
        diff = max(float(np.abs(forward(teacher, i, s).numpy() - run_predictor(fp32_predictor, i, s)).max())
                   for i, s in calib[:2])
    if not diff <= 1e-3:
        raise UserError(f"--qat_model {model_dir}: its outputs differ from --model_prefix's by {diff:.2e} on "
                        f"calibration text (> 1e-3); give the dynamic-graph model export_model.py wrote "
                        f"(--sub_model_output_dir) with this static model")
    feats = data.qat_features()
    if len(feats) < batch_size:
        raise UserError(f"--qat_steps: {len(feats)} training text(s) left once the guard's and the search's texts "
                        f"are set aside, fewer than --qat_batch_size {batch_size}")
    # batches of texts of like length (the order of the batches is shuffled in training): less padding
    order = np.argsort([len(f["input_ids"]) for f in feats], kind="stable")
    batches = [data.collate([feats[j] for j in order[i:i + batch_size]])[:2]
               for i in range(0, len(order) - batch_size + 1, batch_size)]
    percent = 1.0 if recipe["algo"] == "abs_max" else recipe.get("hist_percent", 0.9999)
    sim = FakeQuant(student, percent=percent, per_channel=recipe["weight_quantize_type"] == "channel_wise_abs_max",
                    fp32_sites=fp32_sites)
    calibrate(sim, student, calib)   # the student still equals the teacher here
    logger.info("quantization-aware distillation: %d sites simulated, %d training texts (%d batches of %d), "
                "%d steps", len(sim.scales), len(feats), len(batches), batch_size, steps)
    if checkpoints:
        checkpoints.begin()
    record = train(student, teacher, sim, batches, data.kind, pad_id, steps, learning_rate, seed=seed,
                   eval_batches=batches[::max(1, len(batches) // 16)], checkpoints=checkpoints)
    save_static(student, out_prefix)
    record.update(texts=len(feats), batch_size=batch_size, check_max_abs_diff=diff, simulated_sites=len(sim.scales),
                  scale_percentile=percent, model_dir=model_dir)
    return record
