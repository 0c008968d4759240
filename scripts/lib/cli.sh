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
