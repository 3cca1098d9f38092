#!/usr/bin/env bash
# A full disk leaves a way out (issue 9 item 2). The primary's data directory is on a small
# tmpfs this test mounts (and unmounts): a load fills it; every refusal is KV_EFULL (never
# "internal"), the daemon stays up and serves reads, and deletes, purges and bucket removal
# still work, also after a restart on the still-full disk. Then the disk is filled from
# outside (a file beside the store, as another process would) while the store's map has
# room: writes that would need the log's disk are refused KV_EFULL before they are proposed,
# not failed in the log append.
#
#   fulldisk.sh GEOKV_PRIMARY RAWCLIENT GEOKV_CLI
. "$(dirname "$0")/../lib/harness.sh"
PRIM=$1 RAW=$2 CLI=$3
tap_start

DISK=$TMP/disk
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=24m tmpfs "$DISK" 2>"$TMP/mount.err"; then
	skip "a full disk leaves a way out" "cannot mount a tmpfs here ($(cat "$TMP/mount.err")): needs root"
	tap_end
	exit 0
fi
# the harness's EXIT trap stops every process it spawned (they hold the mount), then unmount
cleanup_disk() { umount "$DISK" 2>/dev/null || umount -l "$DISK" 2>/dev/null; true; }
trap 'rc=$?; for p in "${_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; cleanup_disk; (exit $rc); _cleanup' EXIT

raw() { python3 "$RAW" "$ADDR" "$@"; }
cli() { "$CLI" -s "$ADDR" --timeout 10s "$@"; }
D=$DISK/p
start() {
	spawn_primary "$1" "$D" --map-size 4M --map-max 1G --sync-interval-ms 100 "${@:2}"
}
disk_used_pct() { df --output=pcent "$DISK" | tail -1 | tr -dc 0-9; }

if start full1; then ok "primary starts on a 24 MiB tmpfs"; else fail "primary starts on a 24 MiB tmpfs" "$(tail -5 "$LOG")"; fi
check "bucket add" cli bucket add cards --max-value 65536
# 100 keys per second of 1 KiB each is far more than 24 MiB: the load must hit the wall
python3 - >"$TMP/keys.tsv" <<'PY'
for i in range(60000):
    print("card.%06d\t%s" % (i, ("%06d" % i) * 170))
PY
RUN_TIMEOUT=120 run "$CLI" -s "$ADDR" --timeout 10s load cards "$TMP/keys.tsv"
LOADRC=$RC LOADOUT=$OUT
check "the load stops with an error once the disk is full (exit $LOADRC)" test "$LOADRC" -ne 0
case "$LOADOUT" in
*"store is full"*) ok "the load reports the store is full" ;;
*) fail "the load reports the store is full" "${LOADOUT:0:400}" ;;
esac
case "$LOADOUT" in
*internal*) fail "no refusal is an internal error" "${LOADOUT:0:400}" ;;
*) ok "no refusal is an internal error" ;;
esac
check "the daemon is alive on a full disk" kill -0 "$PID"
n=$(cli keys cards | wc -l)
check "some keys were written before it filled ($n)" test "$n" -gt 1000
# the load's 4 MiB batches are refused first; small puts fit a little longer, then not
head -c 4000 /dev/zero | tr '\0' x >"$TMP/v4k"
# Admission estimates what LMDB will need; should a log append still find the disk full,
# the daemon restarts in place (same pid) rather than exit, and refuses from then on.
small=0 out="" restarts=0
for i in $(seq 1 3000); do
	if out=$("$CLI" -s "$ADDR" put cards "extra.$i" - <"$TMP/v4k" 2>&1); then
		small=$((small + 1)); continue
	fi
	case "$out" in
	*"connection closed"* | *"connection refused"*)
		restarts=$((restarts + 1))
		[ "$restarts" -le 3 ] && wait_until 10 cli status >/dev/null && continue ;;
	esac
	break
done
echo "# $small small puts acknowledged after the load, $restarts restarts in place"
case "$out" in
*"store is full"*) ok "4 KiB puts are refused too, with store is full, after $small more" ;;
*) fail "4 KiB puts are refused with store is full" "after $small: $out" ;;
esac
check "the disk really is nearly full ($(disk_used_pct)%)" test "$(disk_used_pct)" -ge 85
expect "reads are still served" "000017000017" cli get cards card.000017 --raw
check "no log line says internal error" bash -c "! grep -qi 'internal' '$LOG'"
check "the same daemon (pid $PID) still serves after the filling" kill -0 "$PID"
check "it never exited (no 'exiting' in its log)" bash -c "! grep -q 'exiting' '$LOG'"

# The way out: deletes, a purge, a bucket removal, while the disk is full.
expect_rc "a delete works on the full disk" 0 "" cli del cards card.000001
expect_rc "a purge works on the full disk" 0 "" cli purge cards card.000002
cut -f1 "$TMP/keys.tsv" | head -n 10000 | tail -n +4 >"$TMP/del.keys"
fails=0
while read -r k; do cli del cards "$k" >/dev/null 2>&1 || fails=$((fails + 1)); done < <(head -n 300 "$TMP/del.keys")
check "300 more deletes on the full disk: $fails refused" test "$fails" = 0

# A restart on the still-full disk: it starts, serves, and deletes still work.
stop "$PID"
check "stops cleanly on the full disk" test "$RC" = 0
if start full2; then ok "restarts on the full disk"; else fail "restarts on the full disk" "$(tail -5 "$LOG")"; fi
expect_rc "a delete works after the restart" 0 "" cli del cards card.000500
expect_rc "bucket rm -f works on the full disk" 0 "" cli bucket rm cards -f
expect_rc "the bucket is gone" 0 "" sh -c "! '$CLI' -s '$ADDR' bucket ls | grep -q cards"
stop "$PID"
check "stops cleanly" test "$RC" = 0

# The log's disk full while the store's map has room: a file beside the store takes all
# the free space. Writes are refused KV_EFULL at admission; nothing reaches a failing log
# append, so the daemon neither exits nor answers "internal".
if start full3; then ok "restarts after the bucket removal"; else fail "restarts after the bucket removal" "$(tail -5 "$LOG")"; fi
check "bucket add after the removal" cli bucket add b2
expect_rc "a put before the disk fills" 0 "" cli put b2 before yes
dd if=/dev/zero of="$DISK/filler" bs=1M count=64 2>/dev/null
check "the filler took the disk ($(disk_used_pct)%)" test "$(disk_used_pct)" -ge 99
refused=0 other=""
head -c 60000 /dev/zero | tr '\0' y >"$TMP/v60k"
for i in $(seq 1 40); do
	out=$(cli put b2 "k$i" - <"$TMP/v60k" 2>&1) && continue
	case "$out" in *"store is full"*) refused=$((refused + 1)) ;; *) other=$out ;; esac
done
check "puts on a full log disk are refused: store is full ($refused of 40)" test "$refused" -gt 0
check "no other error ($other)" test -z "$other"
check "the daemon is alive" kill -0 "$PID"
expect_rc "a delete still works" 0 "" cli del b2 before
rm -f "$DISK/filler"
check "once space is freed, writes work again" wait_until 10 cli put b2 after yes
stop "$PID"
check "stops cleanly" test "$RC" = 0
if start full4; then ok "restarts"; else fail "restarts" "$(tail -5 "$LOG")"; fi
expect "what was acknowledged is there after the restart" "yes" cli get b2 after --raw
stop "$PID"
cleanup_disk
tap_end
