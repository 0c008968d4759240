# Helpers shared by the cluster scripts (sourced, not run): errors, and commands printed
# before they run so that --dry-run shows exactly what a real run would do.
# shellcheck shell=bash

# Print an error prefixed with the script's name and exit 2 (bad usage).
die() {
  echo "${0##*/}: $*" >&2
  exit 2
}

# Print an argument so that the printed command can be pasted into a shell.
quote() {
  case $1 in
    '') printf "''" ;;
    *[!A-Za-z0-9_./:=,@%+-]*) printf "'%s'" "${1//\'/\'\\\'\'}" ;;
    *) printf '%s' "$1" ;;
  esac
}

# Print a command prefixed with "+ ".
print_command() {
  local arg line="+"
  for arg in "$@"; do
    line+=" $(quote "$arg")"
  done
  echo "$line"
}

# Print a command prefixed with "+ ", then run it unless DRY_RUN is 1.
run() {
  print_command "$@"
  if [[ $DRY_RUN == 0 ]]; then
    "$@"
  fi
}

# Set OVERLAY_ABS (absolute) and OVERLAY (as printed: relative to $REPO when inside it) from the
# argument naming an overlay: a folder name of overlays/ (cpu, gpu, cpu-trainjob, ...) or a kustomization directory.
# shellcheck disable=SC2034 # OVERLAY and OVERLAY_ABS are for the scripts that source this file.
resolve_overlay() {
  local arg=$1
  # A bare name is one of the repository's overlays (cpu, gpu, cpu-trainjob, gpu-kserve, ...).
  if [[ $arg != */* && -f $REPO/overlays/$arg/kustomization.yaml ]]; then
    arg="$REPO/overlays/$arg"
  fi
  [[ -f $arg/kustomization.yaml || -f $arg/kustomization.yml || -f $arg/Kustomization ]] ||
    die "unknown argument '$1' (expected cpu, gpu, another folder of overlays/ or a directory with a kustomization.yaml; --help lists the options)"
  OVERLAY_ABS=$(cd "$arg" && pwd -P)
  [[ -f $OVERLAY_ABS/kustomization.yaml ]] || [[ -f $OVERLAY_ABS/kustomization.yml ]] ||
    [[ -f $OVERLAY_ABS/Kustomization ]] || die "$OVERLAY_ABS/kustomization.yaml not found"
  case $OVERLAY_ABS in
    "$REPO"/*) OVERLAY=${OVERLAY_ABS#"$REPO"/} ;;
    *) OVERLAY=$OVERLAY_ABS ;;
  esac
}
