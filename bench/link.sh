# shape_link PORT: rate-limit lo's traffic from and to PORT to $LINK (a tc rate: 100mbit, 20mbit...), only in a
# private network namespace: htb classes with a tbf leaf (burst 256kb, latency 100ms; bandwidth only, no added
# round-trip time: tc's netem is not available here). Unclassified traffic (the sim <-> its PostgreSQL, psql)
# stays unshaped, as it would be with a remote CARTO. Sourced by bench/aggregate.sh and bench/write.sh, which
# remove the qdisc on exit (`tc qdisc del dev lo root`).
shape_link() {
  local port=$1 self host others
  self=$(readlink /proc/self/ns/net 2>/dev/null || true)
  host=$(readlink /proc/1/ns/net 2>/dev/null || true)  # unreadable without CAP_SYS_PTRACE: then empty
  [ -n "$self" ] || die "LINK=$LINK: cannot read /proc/self/ns/net; refusing to shape"
  [ "$self" != "$host" ] || die "LINK=$LINK: this is the host's network namespace ($self): refusing to shape its loopback (run inside unshare -n, with lo brought up)"
  # /proc/1 may be unreadable (then the comparison above proves nothing): a private namespace has only lo.
  others=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2}' | tr '\n' ' ')
  [ -z "$others" ] || die "LINK=$LINK: this network namespace has interfaces besides lo ($others): not a private one, refusing to shape"
  tc qdisc add dev lo root handle 1: htb default 99  # unclassified traffic (sim <-> its PostgreSQL, psql) is not shaped
  tc class add dev lo parent 1: classid 1:1 htb rate "$LINK" ceil "$LINK" burst 256kb cburst 256kb   # CARTO -> client
  tc class add dev lo parent 1: classid 1:2 htb rate "$LINK" ceil "$LINK" burst 256kb cburst 256kb   # client -> CARTO
  tc qdisc add dev lo parent 1:1 handle 10: tbf rate "$LINK" burst 256kb latency 100ms
  tc qdisc add dev lo parent 1:2 handle 20: tbf rate "$LINK" burst 256kb latency 100ms
  tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$port" 0xffff flowid 1:1
  tc filter add dev lo parent 1: protocol ip prio 2 u32 match ip dport "$port" 0xffff flowid 1:2
}

