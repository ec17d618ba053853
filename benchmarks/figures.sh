#!/usr/bin/env bash
# The figures the README and the closing notes quote, measured on this machine:
# run `make demo` first (it leaves the fine-tuned MiniLM teacher, the real
# sentiment data and its compress.py candidates in out/demo), then
#
#     bash benchmarks/figures.sh [STAGE ...]      # stages: ofa prune msra bench half train_bench ofa_bench
#
# Every stage prints its own figures and writes them under $OUT.  Timing
# stages (bench, train_bench, ofa_bench) come last and should run alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEMO=${DEMO:-out/demo}
OUT=${OUT:-out/figures}
DATA=$DEMO/data
TEACHER=$DEMO/teacher/best
OFA_STEPS=${OFA_STEPS:-150}
MSRA_STEPS=${MSRA_STEPS:-400}
MSRA_OFA_STEPS=${MSRA_OFA_STEPS:-200}
C=(--max_seq_length 64 --batch_size 32 --device cpu --logging_steps 25)
HALF_STEPS=${HALF_STEPS:-400}
STAGES=${*:-ofa prune msra bench half train_bench ofa_bench}
mkdir -p "$OUT"
has() { [[ " $STAGES " == *" $1 "* ]]; }
say() { echo; echo "===== [figures] $* ====="; }

export_static() {  # NAME SRC WIDTH DEPTH [extra flags]
  local name=$1 src=$2 width=$3 depth=$4; shift 4
  $PY export_model.py --model_name_or_path "$src" --width_mult "$width" --depth_mult "$depth" \
      --sub_model_output_dir "$OUT/export/$name/dynamic" --static_sub_model "$OUT/export/$name/static/model" \
      --max_seq_length 128 "$@"
}

if has ofa; then
  say "OFA: widths 1, 3/4, 1/2 x depths 1, 1/2 on the demo teacher ($OFA_STEPS steps)"
  $PY run_glue_ofa.py --task_name SST-2 --model_name_or_path "$TEACHER" --data_dir "$DATA" \
      --output_dir "$OUT/ofa" --learning_rate 5e-5 --max_steps "$OFA_STEPS" --save_steps 50 \
      --width_mult_list 1.0 3/4 1/2 --depth_mult_list 1.0 1/2 --overwrite_output_dir "${C[@]}"
  export_static teacher "$TEACHER" 1.0 1.0 --data_dir "$DATA"
  export_static w0.7500 "$OUT/ofa/width_0.7500" 3/4 1.0 --data_dir "$DATA"
  export_static w0.5000 "$OUT/ofa/width_0.5000" 1/2 1.0 --data_dir "$DATA"
  export_static w0.5000_d0.5 "$OUT/ofa/width_0.5000_depth_0.5000" 1/2 1/2 --data_dir "$DATA"
  say "INT8 of width 1/2 (post-training quantization, dev metric guarded)"
  rm -rf "$OUT/export/w0.5000_int8"
  $PY quantize.py --model_prefix "$OUT/export/w0.5000/static/model" \
      --output_prefix "$OUT/export/w0.5000_int8/static/model" --data_dir "$DATA" --batch_num 8 --batch_size 16
  rm -rf "$OUT/export/teacher_int8"
  $PY quantize.py --model_prefix "$OUT/export/teacher/static/model" \
      --output_prefix "$OUT/export/teacher_int8/static/model" --data_dir "$DATA" --batch_num 8 --batch_size 16 \
      || echo "(the teacher's INT8 model was refused by the accuracy guard: see above)"
  say "dev metric of the static models (Paddle Inference, as deployed)"
  prefixes=()
  for f in "$OUT"/export/*/static/model.pdiparams; do prefixes+=("${f%.pdiparams}"); done
  $PY benchmarks/static_dev_metric.py --data_dir "$DATA" --max_seq_length 64 --models "${prefixes[@]}"
fi

if has prune; then
  say "one-shot pruning to 6 heads and FFN 768, re-fine-tuned; vocabulary pruning"
  $PY prune.py --model_name_or_path "$TEACHER" --output_dir "$OUT/pruned" --task_name SST-2 --data_dir "$DATA" \
      --target_num_of_heads 6 --target_ffn_size 768 --max_seq_length 64
  $PY run_glue.py --task_name SST-2 --model_name_or_path "$OUT/pruned" --data_dir "$DATA" \
      --output_dir "$OUT/pruned_ft" --learning_rate 5e-5 --num_train_epochs 1 --save_steps 30 \
      --warmup_proportion 0.1 --overwrite_output_dir "${C[@]}"
  export_static pruned_ft "$OUT/pruned_ft/best" 1.0 1.0 --data_dir "$DATA"
  $PY prune.py --model_name_or_path "$TEACHER" --output_dir "$OUT/vocab" --prune_vocab \
      --vocab_texts "$DATA/SST-2/train.tsv" "$DATA/SST-2/dev.tsv" --vocab_text_column 1 --measure_memory
  export_static vocab "$OUT/vocab" 1.0 1.0 --data_dir "$DATA"
  $PY benchmarks/static_dev_metric.py --data_dir "$DATA" --max_seq_length 64 --models "$OUT/export/pruned_ft/static/model" \
      "$OUT/export/vocab/static/model"
  $PY prune.py --analyze "$TEACHER" "$OUT/pruned_ft/best" "$OUT/vocab" --names teacher pruned_ft vocab \
      --output_json "$OUT/prune_analysis.json"
fi

if has msra; then
  say "MSRA NER: a small Chinese BERT from scratch on a slice of the real MSRA"
  $PY benchmarks/msra_setup.py --output_dir "$OUT/msra"
  $PY run_msra_ner.py --model_name_or_path "$OUT/msra/model" --data_dir "$OUT/msra/data" \
      --output_dir "$OUT/msra/teacher" --max_seq_length 128 --batch_size 32 --learning_rate 5e-4 \
      --max_steps "$MSRA_STEPS" --warmup_proportion 0.1 --save_steps 200 --logging_steps 50 --device cpu \
      --overwrite_output_dir
  $PY run_msra_ner_ofa.py --model_name_or_path "$OUT/msra/teacher/model_best" --data_dir "$OUT/msra/data" \
      --output_dir "$OUT/msra/ofa" --max_seq_length 128 --batch_size 32 --learning_rate 1e-4 \
      --max_steps "$MSRA_OFA_STEPS" --save_steps 100 --logging_steps 50 --device cpu --width_mult_list 1.0 1/2 \
      --overwrite_output_dir
  for spec in "teacher $OUT/msra/teacher/model_best 1.0" "w0.5 $OUT/msra/ofa/model_0.5 0.5"; do
    set -- $spec
    $PY export_model.py --model_name_or_path "$2" --width_mult "$3" --data_dir "$OUT/msra/data" \
        --sub_model_output_dir "$OUT/msra/export/$1/dynamic" --static_sub_model "$OUT/msra/export/$1/static/model" \
        --max_seq_length 128
  done
  for name in teacher w0.5; do
    start=$(date +%s.%N)
    $PY predict.py --model_prefix "$OUT/msra/export/$name/static/model" --input_file "$OUT/msra/tag_10k.txt" \
        --output_file "$OUT/msra/tagged_$name.jsonl" --threads 2
    echo "tag_10k $name: $(echo "$(date +%s.%N) - $start" | bc) s wall (process start to finish)"
  done
fi

if has bench; then
  say "CPU latency of every exported model (Paddle Inference, oneDNN, 2 threads, length 128)"
  names=() models=()
  for n in teacher w0.7500 w0.5000 w0.5000_d0.5 w0.5000_int8 teacher_int8 pruned_ft vocab; do
    if [ -e "$OUT/export/$n/static/model.pdiparams" ]; then names+=("$n"); models+=("$OUT/export/$n/static/model"); fi
  done
  $PY benchmark.py --models "${models[@]}" --names "${names[@]}" --batch_sizes 1 16 --max_seq_length 128 \
      --threads 2 --memory --output "$OUT/benchmark"
  if [ -d "$OUT/ofa" ]; then
    $PY report.py --ofa_dir "$OUT/ofa" --benchmark "$OUT/benchmark.json" --teacher_dir "$TEACHER" --batch_size 16
  fi
  say "where the time goes: the demo's teacher and width 1/2, per operator type (paddle.profiler)"
  $PY benchmark.py --models "$DEMO/compress/candidates/teacher/static/model" \
      "$DEMO/compress/candidates/w0.5000/static/model" \
      --names teacher w0.5000 --batch_sizes 1 16 --max_seq_length 128 --threads 2 --profile \
      --output "$OUT/profile"
fi

if has half; then
  say "width 1/2 for deployment: width 1/2 at depths 1 and 1/2 ($HALF_STEPS steps, lr 1e-4, --data_aug), INT8, latency"
  # one compress.py run: OFA, export (checked), INT8 of every candidate (guarded), latency at batch 16;
  # the budget (at most 1 point below the teacher) picks the fastest model within it; rerunning resumes
  H=$OUT/half
  $PY compress.py --model_name_or_path "$TEACHER" --task_name SST-2 --data_dir "$DATA" --data_aug \
      --output_dir "$H" --width_mult_list 1/2 --depth_mult_list 1.0 1/2 --max_steps "$HALF_STEPS" --save_steps 50 \
      --learning_rate 1e-4 --warmup_proportion 0.1 --train_batch_size 32 --train_max_seq_length 64 \
      --int8 --int8_batch_num 8 --max_metric_drop 0.01 --batch_size 16 --max_seq_length 128 \
      || echo "(compress.py: no candidate within the budget, see above)"
  models=(); for f in "$H"/candidates/*/static/model.pdiparams; do models+=("${f%.pdiparams}"); done
  $PY benchmarks/static_dev_metric.py --data_dir "$DATA" --max_seq_length 64 --models "${models[@]}"
fi

if has train_bench; then
  say "training throughput and peak memory of MiniLM (seq 128, batch 32)"
  $PY benchmarks/bench_train.py --batch_size 32 --max_seq_length 128 --steps 10
fi

if has ofa_bench; then
  say "OFA step time: teacher once per batch vs once per width (4 widths)"
  $PY benchmarks/bench_ofa_step.py --model_dir "$TEACHER"
fi
