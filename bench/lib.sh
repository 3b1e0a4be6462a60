# Helpers the bench scripts share (sourced, not run).

# step NAME COMMAND...: runs COMMAND under GNU time, its output in $out/NAME.txt and its
# wall time and peak memory in $out/time-NAME.txt, and prints both.
step() {
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$out/time-$name.txt" "$@" > "$out/$name.txt"
  local secs kib
  read -r secs kib < <(tail -1 "$out/time-$name.txt")
  printf '%-34s %9.1f s   peak RSS %7.0f MiB\n' "$name" "$secs" "$(awk "BEGIN{print $kib/1024}")"
}

# need_wrk: installs wrk from Debian's packages if it is missing.
need_wrk() {
  command -v wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk > /dev/null; }
}
