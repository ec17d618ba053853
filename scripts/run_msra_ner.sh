#!/usr/bin/env bash
# MSRA NER: teacher, OFA, export of width 0.5.  Edit the variables below.
set -euo pipefail
MODEL=${MODEL:-bert-base-chinese}          # or a directory (config.json + vocab.txt starts from random init)
DATA_DIR=${DATA_DIR:-}                     # empty = paddlenlp's msra_ner (online)
OUT=${OUT:-../tmp}
DEVICE=${DEVICE:-gpu}
EPOCHS=${EPOCHS:-30}
WIDTHS=${WIDTHS:-"1.0 0.8333333333333334 0.6666666666666666 0.5"}
cd "$(dirname "$0")/.."
python -u ./run_msra_ner.py --model_name_or_path "$MODEL" ${DATA_DIR:+--data_dir "$DATA_DIR"} --max_seq_length 128 \
    --batch_size 32 --learning_rate 2e-5 --num_train_epochs "$EPOCHS" --logging_steps 1 --save_steps 500 \
    --output_dir "$OUT/msra_ner/" --device "$DEVICE"
# shellcheck disable=SC2086
python -u ./run_msra_ner_ofa.py --model_type bert --model_name_or_path "$OUT/msra_ner/model_best/" --task_name msra \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --max_seq_length 128 --batch_size 32 --learning_rate 2e-5 \
    --num_train_epochs "$EPOCHS" --logging_steps 1 --save_steps 100 --output_dir "$OUT/msra_ner_ofa/" \
    --device "$DEVICE" --width_mult_list $WIDTHS
python -u ./export_model.py --model_type bert --model_name_or_path "$OUT/msra_ner_ofa/model_0.5" --max_seq_length 128 \
    --sub_model_output_dir "$OUT/msra_ner_ofa/model_0.5/dynamic_model" \
    --static_sub_model "$OUT/msra_ner_ofa/model_0.5/static_model" --width_mult 0.5 \
    ${DATA_DIR:+--data_dir "$DATA_DIR"} --device "$DEVICE"
