#!/usr/bin/env bash
# make lab's phase table (docs/lab.md "First run: phases"): the wall time of every step of one
# `make lab`, as `phase<TAB>seconds` rows in the file $LLMCLUSTER_PHASES (the Makefile names it:
# $(OUT)/lab-phases.tsv). A phase named "parent / part" is a part of the phase "parent" (setup's
# steps, `lab up`'s base image and host start). `llmcluster lab summary` prints the table.
#
#   bash scripts/phases.sh start              start the file afresh (refuses a file it did not start)
#   bash scripts/phases.sh add PHASE SECONDS  append a row
#   bash scripts/phases.sh run PHASE CMD...   run CMD, append its wall time, exit with its status
#
# Sourced (scripts/setup.sh), it defines the functions below and does nothing else. Without
# $LLMCLUSTER_PHASES, `add` and `run` record nothing. Every write goes to a temporary file beside the
# phases file, renamed over it.

# The first line of a phases file: a file without it was not started here and is never written.
# (llmcluster/lab/phases.py reads the same line: PHASES_HEADER.)
PHASES_HEADER="# llmcluster lab phases v1: phase<TAB>seconds; 'a / b' is a part of phase a"

# Microseconds since the epoch (bash 5's EPOCHREALTIME; its decimal point follows the locale).
phases_now() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    echo "${EPOCHREALTIME//[!0-9]/}"
  else
    echo $(($(date +%s%N) / 1000))
  fi
}

# Seconds (one decimal, rounded) since START (from phases_now).
phases_since() {
  local d=$(($(phases_now) - $1 + 50000))
  printf '%d.%d' $((d / 1000000)) $(((d % 1000000) / 100000))
}

# Is FILE a phases file this script started?
phases_ours() {
  local first=""
  [ -f "$1" ] && IFS= read -r first <"$1" && [ "$first" = "$PHASES_HEADER" ]
}

# Write FILE atomically: its new content comes on stdin.
phases_write() {
  local tmp
  tmp="$(mktemp "$1.XXXXXX")" || return 1
  if cat >"$tmp" && mv -f "$tmp" "$1"; then
    return 0
  fi
  rm -f "$tmp"
  return 1
}

phases_start() {
  local file="${LLMCLUSTER_PHASES:-}"
  if [ -z "$file" ]; then
    echo "phases: LLMCLUSTER_PHASES is not set: no phases file to start" >&2
    return 2
  fi
  if [ -e "$file" ] && ! phases_ours "$file"; then
    echo "phases: $file: not a phases file that make lab started (its first line is not the phases header):" \
      "move it away; it is not overwritten" >&2
    return 1
  fi
  mkdir -p "$(dirname "$file")"
  printf '%s\n' "$PHASES_HEADER" | phases_write "$file"
}

# Append the row PHASE<TAB>SECONDS (tabs and newlines in PHASE become spaces).
phases_add() {
  local file="${LLMCLUSTER_PHASES:-}" phase="${1//[$'\t\n\r']/ }" seconds="$2"
  [ -n "$file" ] || return 0
  if ! [[ "$seconds" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
    echo "phases: $phase: seconds must be a number, got '$seconds'" >&2
    return 2
  fi
  # Two writers may add rows at once (setup's steps, and the base image built beside setup:
  # llmcluster/lab/image.py): each read-and-replace holds a lock on the phases file's folder (the file
  # itself is replaced by every write; llmcluster/lab/phases.py takes the same lock).
  (
    flock -w 30 9 || { echo "phases: $(dirname "$file"): not locked in 30 s: the row '$phase' is not written" >&2; exit 1; }
    if ! phases_ours "$file"; then
      echo "phases: $file: not a phases file that make lab started: the row '$phase' is not written" >&2
      exit 1
    fi
    { cat "$file" && printf '%s\t%s\n' "$phase" "$seconds"; } | phases_write "$file"
  ) 9<"$(dirname "$file")"
}

# Run CMD..., record its wall time as PHASE, say it on stderr, return CMD's status.
phases_run() {
  local phase="$1" start rc=0 seconds
  shift
  start="$(phases_now)"
  "$@" || rc=$?
  seconds="$(phases_since "$start")"
  phases_add "$phase" "$seconds" || true
  echo "make lab: $phase: $seconds s$([ "$rc" = 0 ] || echo " (exit $rc)")" >&2
  return "$rc"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  case "${1:-}" in
    start) [ $# = 1 ] && { phases_start; exit; } ;;
    add) [ $# = 3 ] && { phases_add "$2" "$3"; exit; } ;;
    run) [ $# -ge 3 ] && { shift; phases_run "$@"; exit; } ;;
  esac
  echo "usage: $0 start | add PHASE SECONDS | run PHASE CMD..." >&2
  exit 2
fi
