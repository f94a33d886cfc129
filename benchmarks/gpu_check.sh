#!/bin/bash
# Finetune mode on a GPU, and what the cpu recipe gives there (docs/reproduce.md "On a GPU").
#
#   bash benchmarks/gpu_check.sh CIFAR10_ROOT [RUNS_DIR]
#
# CIFAR10_ROOT is an image-folder CIFAR-10 (train/<class>/, test/<class>/); the measured run used a subset of
# ../shared/data/cifar10 (the first 1,000 training and 200 test images of each class) because the GPU machine
# took at most 64 MiB with the repository. cifar10-1 on it keeps the full protocol's 1,000 queries and 5,000
# training images; its database is 11,000 images instead of 59,000. Splits are drawn afresh (HASHLAB_SPLITS).
#   1. the four seed methods' paper profiles in finetune mode, random init (--model.backbone_pretrained false:
#      that machine cannot download ImageNet weights), one or two epochs: the code path and its throughput;
#   2. dpsh_googlenet's cpu recipe (offline EfficientNet-Lite0 weights, 16 epochs): partial mode as in the
#      tables, then the whole backbone fine-tuned at 128 px and at 224 px.
set -u
root=${1:?usage: bash benchmarks/gpu_check.sh CIFAR10_ROOT [RUNS_DIR]}
runs=${2:-runs/gpu-check}
export HASHLAB_SPLITS=$runs/splits PYTHONUNBUFFERED=1
workers=$(( $(nproc) - 1 ))
data=(--data.class_path hashlab.data.CIFAR10 --data.root "$root" --data.protocol cifar10-1
      --data.num_workers "$workers")
fit() { # name, then hashlab fit arguments
  local name=$1; shift
  local start=$SECONDS
  hashlab fit --runs_dir "$runs/$name" "$@" > "$runs/log-$name.txt" 2>&1
  echo "$name: exit $?, $((SECONDS - start)) s, $(find "$runs/$name" -name record.json)"
}
mkdir -p "$runs"
for method in dpsh_googlenet dfch fdh_mfe attribute_hash; do
  epochs=2; [ $method = attribute_hash ] && epochs=1
  fit $method-paper --config experiments/methods/$method.yaml "${data[@]}" --model.backbone_pretrained false \
      --model.bits 48 --trainer.max_epochs $epochs
done
cpu=(--config experiments/methods/dpsh_googlenet.yaml --profile cpu "${data[@]}")
fit lite0-partial128 "${cpu[@]}"
fit lite0-finetune128 "${cpu[@]}" --model.mode finetune
fit lite0-finetune224 "${cpu[@]}" --model.mode finetune --data.image_size 224
