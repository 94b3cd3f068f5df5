#!/usr/bin/env bash
# Capture golden Exim output for mailwatch's parser tests from a REAL Exim 4.96 (Debian 12
# exim4-daemon-light), unpacked (not installed) under $PREFIX and run with a private
# configuration, spool and log under $SANDBOX. Run as root. See README.md.
set -euo pipefail
PREFIX=${PREFIX:-/tmp/exim-prefix}
SANDBOX=${SANDBOX:-/tmp/exim-capture}
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
export LD_LIBRARY_PATH=$PREFIX/usr/lib/x86_64-linux-gnu   # the unpacked libidn12
EXIM_BIN=$PREFIX/usr/sbin/exim4
CONF=$SANDBOX/exim.conf
exim() { "$EXIM_BIN" -C "$CONF" "$@"; }
dead_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

rm -rf "$SANDBOX"
mkdir -p "$SANDBOX"/{spool,mail,log}
chown Debian-exim:Debian-exim "$SANDBOX"/spool "$SANDBOX"/mail "$SANDBOX"/log
cat > "$CONF" <<CONF
exim_path = $EXIM_BIN
spool_directory = $SANDBOX/spool
log_file_path = $SANDBOX/log/%slog
primary_hostname = mailwatch-sandbox.invalid
qualify_domain = probation.example
domainlist local_domains = local.invalid
keep_environment =
tls_advertise_hosts =
acl_smtp_rcpt = accept
acl_smtp_data = accept
trusted_users = root
delay_warning = 0s
host_lookup =
rfc1413_hosts =

begin routers
team_alias:
  driver = redirect
  domains = +local_domains
  local_parts = team
  data = duty@local.invalid, ppcs-team@justice.example

local_box:
  driver = accept
  domains = +local_domains
  transport = local_file

loop_to_self:
  driver = manualroute
  domains = loop.invalid
  route_list = * 127.0.0.1
  self = freeze
  transport = dead_smtp

dead_relay:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = dead_smtp

begin transports
local_file:
  driver = appendfile
  file = $SANDBOX/mail/mailbox
  user = Debian-exim
  group = Debian-exim
  mode = 0600

dead_smtp:
  driver = smtp
  port = $dead_port
  allow_localhost
  connect_timeout = 2s

begin retry
*  *  F,7d,1m
CONF

# An empty queue lists as nothing at all.
exim -bpru > "$OUT/bpru-empty.txt"

submit() {  # submit LABEL SENDER RECIPIENT... < message; queue only (-odq), record the id
  local label=$1 sender=$2; shift 2
  exim -odq -f "$sender" "$@"
  local id; id=$(grep -o '^[^ ]* [^ ]* [^ ]* <= ' "$SANDBOX/log/mainlog" | tail -1 | cut -d' ' -f3)
  printf '%s\t%s\n' "$label" "$id" >> "$SANDBOX/manifest.tsv"
}
: > "$SANDBOX/manifest.tsv"

printf 'From: om@probation.example\nTo: ppcs@justice.example\nSubject: OFFICIAL-SENSITIVE: Emergency recall request - Part A\n\nRecall.\n' \
  | submit recall om@probation.example ppcs@justice.example
printf 'From: om@probation.example\nTo: duty@local.invalid, courts@justice.example\nSubject: Court results for today\n\nResults.\n' \
  | submit partial om@probation.example duty@local.invalid courts@justice.example
printf 'From: admin@probation.example\nTo: it@justice.example\nSubject: Weekly digest\n\nDigest.\n' \
  | submit frozen_admin admin@probation.example it@justice.example
printf 'From: om@probation.example\nTo: host@loop.invalid\nSubject: Part A recall\n\nLoop.\n' \
  | submit frozen_self om@probation.example host@loop.invalid
printf 'From: Mail Delivery System <Mailer-Daemon@probation.example>\nTo: om@probation.example\nSubject: Mail delivery failed: returning message to sender\n\nBounce.\n' \
  | submit bounce '' om@justice.example
printf 'From: om@probation.example\nTo: team@local.invalid\nSubject: [OFFICIAL] Risk of serious harm update\n\nTeam.\n' \
  | submit team om@probation.example team@local.invalid
{ printf 'From: om@probation.example\nTo: ppcs@justice.example\nSubject: Licence conditions\n\n'
  head -c 2100 /dev/zero | tr '\0' 'x' | fold -w 70; } | submit size_k om@probation.example ppcs@justice.example
{ printf 'From: om@probation.example\nTo: ppcs@justice.example\nSubject: Case file\n\n'
  head -c 15000 /dev/zero | tr '\0' 'y' | fold -w 70; } | submit size_kk om@probation.example ppcs@justice.example
{ printf 'From: om@probation.example\nTo: ppcs@justice.example\nSubject: Scanned documents\n\n'
  head -c 1250000 /dev/zero | tr '\0' 'z' | fold -w 76; } | submit size_m om@probation.example ppcs@justice.example
# -t: recipients from the headers; Exim removes the Bcc header, marking it deleted (*) in -H.
printf 'From: om@probation.example\nTo: ppcs@justice.example\nBcc: audit@justice.example\nSubject: Breach notification\n\nBcc.\n' \
  | exim -odq -t -f om@probation.example
printf '%s\t%s\n' bcc "$(grep -o '^[^ ]* [^ ]* [^ ]* <= ' "$SANDBOX/log/mainlog" | tail -1 | cut -d' ' -f3)" >> "$SANDBOX/manifest.tsv"
printf 'From: om@probation.example\nTo: ppcs@justice.example\nSubject: spool damaged later\n\nx\n' \
  | submit corrupt_h om@probation.example ppcs@justice.example
printf 'From: om@probation.example\nTo: ppcs@justice.example\nSubject: data file removed later\n\nx\n' \
  | submit missing_d om@probation.example ppcs@justice.example
# SMTP submission (-bs): a Received header, an RFC 2047 subject, a folded To, raw UTF-8.
exim -odq -bs > "$SANDBOX/smtp-session.txt" <<'SMTP'
HELO client.probation.example
MAIL FROM:<duty.officer@probation.example>
RCPT TO:<ppcs@justice.example>
RCPT TO:<victims@justice.example>
RCPT TO:<police@justice.example>
DATA
From: "Duty Officer" <duty.officer@probation.example>
To: ppcs@justice.example,
 victims@justice.example
Cc: police@justice.example
Subject: =?UTF-8?Q?RE:_[OFFICIAL-SENSITIVE]_Emergency_recall_=E2=80=93_Part_A?=
X-Note: café

Body.
.
QUIT
SMTP
printf '%s\t%s\n' smtp "$(grep -o '^[^ ]* [^ ]* [^ ]* <= ' "$SANDBOX/log/mainlog" | tail -1 | cut -d' ' -f3)" >> "$SANDBOX/manifest.tsv"

id_of() { awk -v l="$1" '$1 == l {print $2}' "$SANDBOX/manifest.tsv"; }

# One forced queue run: remote deliveries defer (connection refused), local ones succeed,
# loop.invalid freezes ("remote host address is the local host").
exim -qf
exim -Mf "$(id_of frozen_admin)"

# Backdate three messages so ages show in minutes, hours and days: rewrite the received
# time (line 4 "<epoch> <warnings>" and -received_time_complete) of their -H files.
python3 - "$SANDBOX/spool/input" "$(id_of recall)" 1500 "$(id_of partial)" 18000 "$(id_of frozen_admin)" 345600 <<'PY'
import os, re, sys
spool, pairs = sys.argv[1], sys.argv[2:]
for msg_id, seconds in zip(pairs[::2], pairs[1::2]):
    path = os.path.join(spool, f"{msg_id}-H")
    lines = open(path, "rb").read().split(b"\n")
    epoch, warnings = lines[3].split(b" ")
    lines[3] = b"%d %s" % (int(epoch) - int(seconds), warnings)
    lines = [re.sub(rb"^(-received_time_complete )(\d+)", lambda m: m.group(1) + b"%d" % (int(m.group(2)) - int(seconds)), l) for l in lines]
    stat = os.stat(path)
    with open(path, "wb") as handle:
        handle.write(b"\n".join(lines))
    os.chown(path, stat.st_uid, stat.st_gid)
PY
# Damage two messages the way a crash or a careless admin would.
truncate -s 40 "$SANDBOX/spool/input/$(id_of corrupt_h)-H"
rm "$SANDBOX/spool/input/$(id_of missing_d)-D"

date +%s > "$OUT/captured-at.txt"
exim -bpru > "$OUT/bpru.txt"
exim -bpr > "$OUT/bpr.txt"
exim -bpra > "$OUT/bpra.txt"
cp "$SANDBOX/manifest.tsv" "$OUT/manifest.tsv"
rm -rf "$OUT/Mvh" "$OUT/Mvl" "$OUT"/Mvh-gone.*
mkdir -p "$OUT/Mvh" "$OUT/Mvl"
while IFS=$'\t' read -r label id; do
  exim -Mvh "$id" > "$OUT/Mvh/$id.txt" || echo "exit $?" >> "$OUT/Mvh/$id.rc"
  exim -Mvl "$id" > "$OUT/Mvl/$id.txt" || echo "exit $?" >> "$OUT/Mvl/$id.rc"
done < "$SANDBOX/manifest.tsv"
# A message that is not (or no longer) on the queue.
gone=$(id_of recall | sed 's/^\(......\)-....../\1-000000/')
rc=0; exim -Mvh "$gone" > "$OUT/Mvh-gone.stdout" 2> "$OUT/Mvh-gone.stderr" || rc=$?
echo "$rc" > "$OUT/Mvh-gone.rc"
"$EXIM_BIN" -C "$CONF" -bV | head -1 > "$OUT/exim-version.txt"
install -m 644 "$SANDBOX/log/mainlog" "$OUT/mainlog.txt"

# DERIVED, not captured: Exim 4.97+ prints 23-character ids (6-11-4 base-62 digits) where
# 4.96 prints 16 (6-6-2). No 4.97+ Exim runs on Debian 12, so the 4.96 output is rewritten
# into that shape (pid and fraction groups zero-padded). For -Mvh only the first line (the
# file name) is rewritten: the header byte counts must stay true.
old_id='\b([0-9A-Za-z]{6})-([0-9A-Za-z]{6})-([0-9A-Za-z]{2})\b'
sed -E "s/$old_id/\1-00000\2-00\3/g" "$OUT/bpru.txt" > "$OUT/derived-bpru-new-ids.txt"
sed -E "1s/$old_id/\1-00000\2-00\3/" "$OUT/Mvh/$(id_of smtp).txt" > "$OUT/derived-Mvh-new-id.txt"
