#!/usr/bin/env python3
"""Structural checks of the files in deploy/, for tests/deploy/check.sh.

Each check prints one line: `ok<TAB>NAME` or `fail<TAB>NAME<TAB>DETAIL`; check.sh turns
them into TAP. Subcommands:

  ini DAEMON HELP_FILE INI_FILE      the example config against `DAEMON --help`
  k8s FILE...                        Kubernetes manifests (python3-yaml)
  json FILE...                       JSON files parse
  pod-ports FILE                     (no checks) every containerPort of the StatefulSet's pod
  pod FILE OUTDIR [--env K=V]... [--sub FROM=TO]... [--port CPORT=LPORT]...
                                     (no checks) the StatefulSet's pod as local commands:
                                     OUTDIR/NAME.argv and NAME.env (NUL-separated), NAME.probes
  dockerfile FILE ROOT [--help F]... [--ini F]... [--k8s F]... [--need PKG]...
"""
import json
import os
import re
import sys


def ok(name):
    print(f"ok\t{name}")


def fail(name, detail):
    print(f"fail\t{name}\t{detail}".replace("\n", " | "))


def check(name, cond, detail=""):
    (ok if cond else lambda n: fail(n, detail))(name)


# --- values, as the shared loader reads them (docs/config.md) -------------------------------

def parse_duration_ms(s):
    s = s.strip().lower()
    if re.fullmatch(r"\d+", s):
        return int(s)
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise ValueError(s)
    return sum(int(a) * units[b] for a, b in parts)


def parse_size(s):
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", s.strip().lower())
    if not m:
        raise ValueError(s)
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


def parse_bool(s):
    v = s.strip().lower()
    if v in ("true", "yes", "on", "1"):
        return True
    if v in ("false", "no", "off", "0"):
        return False
    raise ValueError(s)


def normalize(key, kind, value):
    if key.endswith("_ms") or kind == "DURATION":
        return parse_duration_ms(value)
    if kind == "SIZE":
        return parse_size(value)
    if kind == "BOOL":
        return parse_bool(value)
    if kind == "N":
        return int(value)
    return value.strip()


# --- --help and INI files --------------------------------------------------------------------

OPT_RE = re.compile(r"^\s+(?:-\w, )?--([a-z0-9-]+)(\[=BOOL\])?(?: (\S+))?\s{2,}(.*)$")


def parse_help(text):
    """{(section, key): (kind, default or None)} for every setting --help lists."""
    settings, section = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"\[(\w+)\]", line.strip())
        if m:
            section = m.group(1)
            continue
        m = OPT_RE.match(line)
        if not m or section is None:
            continue
        key = m.group(1).replace("-", "_")
        kind = "BOOL" if m.group(2) else (m.group(3) or "")
        desc = m.group(4)
        default = None
        d = re.search(r"\(default(:?) ([^()]*)\)\s*$", desc)
        if d:
            colon, val = d.group(1), d.group(2).strip()
            # "(default: listen)", "(default: none, plain TCP)" describe; "(default: 1G)" is a
            # value. A value must parse as the setting's kind; strings only without the colon.
            try:
                if colon and kind in ("STRING", "LEVEL", ""):
                    raise ValueError(val)
                normalize(key, kind, val)
                default = val
            except ValueError:
                default = None
        settings[(section, key)] = (kind, default)
    return settings


INI_RE = re.compile(r"^\s*(;\s*)?([a-z][a-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_ini(path, known):
    """[(section, key, value, commented, comment_block, lineno)]; a commented line counts as
    a setting only when it names a known one (otherwise it is prose)."""
    out, section, block = [], None, []
    for n, raw in enumerate(open(path, encoding="utf-8"), 1):
        line = raw.rstrip("\n")
        s = line.strip()
        m = re.fullmatch(r"\[(\w+)\]", s)
        if m:
            section, block = m.group(1), []
            continue
        m = INI_RE.match(line)
        if m and section is not None:
            commented = bool(m.group(1))
            key, value = m.group(2), m.group(3)
            if not commented or (section, key) in known:
                value = re.split(r"\s+;", value)[0].strip()
                out.append((section, key, value, commented, " ".join(block), n))
                block = []
                continue
        if s.startswith(";") or s.startswith("#"):
            block.append(s.lstrip(";# "))
        elif not s:
            block = []
    return out


def cmd_ini(daemon, help_file, ini_file):
    known = parse_help(open(help_file, encoding="utf-8").read())
    name = os.path.basename(ini_file)
    check(f"{daemon} --help lists settings", len(known) > 10, f"parsed {len(known)} settings")
    entries = parse_ini(ini_file, known)
    unknown = [f"{n}: [{s}] {k}" for s, k, v, c, b, n in entries if not c and (s, k) not in known]
    check(f"{name}: every key = value is a {daemon} setting in its section", not unknown,
          "; ".join(unknown))
    listed = {(s, k) for s, k, *_ in entries}
    missing = [f"[{s}] {k}" for s, k in sorted(known) if (s, k) not in listed]
    check(f"{name}: lists every setting of {daemon} --help", not missing,
          "missing: " + ", ".join(missing))
    bad, marked = [], []
    for s, k, v, c, block, n in entries:
        if c or (s, k) not in known:
            continue
        kind, default = known[(s, k)]
        if "not the default" in block.lower():
            marked.append(k)
            if default is not None and normalize(k, kind, v) == normalize(k, kind, default):
                bad.append(f"{n}: [{s}] {k} = {v} is marked 'not the default' but is the default")
            continue
        if default is None:
            bad.append(f"{n}: [{s}] {k} = {v} but --help gives no default value "
                       "(comment it out or mark it 'not the default')")
            continue
        try:
            same = normalize(k, kind, v) == normalize(k, kind, default)
        except ValueError:
            same = False
        if not same:
            bad.append(f"{n}: [{s}] {k} = {v}, --help default {default}")
    check(f"{name}: every value not marked 'not the default' is {daemon}'s default "
          f"(marked: {', '.join(marked) or 'none'})", not bad, "; ".join(bad))
    if daemon == "geokv-primary":
        need = ["peers", "peer_listen", "tick_ms", "election_ticks", "proposal_timeout_ms"]
        have = {k for s, k, *_ in entries if s == "cluster"}
        check(f"{name}: shows the [cluster] section ({', '.join(need)})",
              all(k in have for k in need), f"have {sorted(have)}")


# --- Kubernetes ------------------------------------------------------------------------------

def load_yaml(path):
    import yaml
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def subset(a, b):
    return bool(a) and all(b.get(k) == v for k, v in a.items())


def container_ports(c):
    return {p.get("name"): p["containerPort"] for p in c.get("ports", [])}


def probe_port(probe):
    for t in ("httpGet", "tcpSocket", "grpc"):
        if t in probe:
            return t, probe[t].get("port")
    return ("exec" if "exec" in probe else None), None


def command_text(c):
    return " ".join(str(x) for x in (c.get("command") or []) + (c.get("args") or []))


def runs(c, binary):
    """True when the container's command runs BINARY: as command[0], or exec'd by a shell
    script in the command."""
    cmd = [str(x) for x in c.get("command") or []]
    if cmd and os.path.basename(cmd[0]) == binary:
        return True
    if len(cmd) >= 3 and os.path.basename(cmd[0]) in ("sh", "bash") and cmd[1].startswith("-"):
        return re.search(r"\bexec\s+\S*/" + re.escape(binary) + r"\b", cmd[2]) is not None
    return False


def check_containers(where, spec):
    cs = spec.get("containers") or []
    check(f"{where}: has containers", bool(cs), "no containers")
    for c in cs:
        n = f"{where} container {c.get('name')}"
        ports = container_ports(c)
        for kind in ("livenessProbe", "readinessProbe"):
            check(f"{n}: has a {kind}", kind in c, f"no {kind}")
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind not in c:
                continue
            t, port = probe_port(c[kind])
            good = t in ("httpGet", "tcpSocket") and (
                port in ports.values() if isinstance(port, int) else port in ports)
            check(f"{n}: {kind} {t} port {port} is a port it declares", good,
                  f"declared {ports}")
        text = command_text(c)
        listen = {int(p) for p in re.findall(r"0\.0\.0\.0:(\d+)", text)}
        check(f"{n}: every 0.0.0.0:PORT in its command is a declared containerPort",
              listen <= set(ports.values()), f"listens {sorted(listen)} declares {ports}")
        if "gateway" in c.get("name", "") or "geokv-gateway" in text:
            check(f"{n}: command runs geokv-gateway (not an argument to the image's entrypoint)",
                  runs(c, "geokv-gateway"), f"command {c.get('command')} args {c.get('args')}")
        if "primary" in c.get("name", ""):
            check(f"{n}: command runs geokv-primary", runs(c, "geokv-primary"),
                  f"command {c.get('command')}")
        args0 = str((c.get("args") or [""])[0])
        check(f"{n}: first argument is not a program name", not args0.startswith("geokv"),
              f"args[0] = {args0}")
        if "resources" in c or where.startswith("StatefulSet"):
            r = c.get("resources") or {}
            check(f"{n}: resource requests and limits (cpu, memory)",
                  all(k in r.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
                  f"resources {r}")
    return cs


def cmd_k8s(paths):
    for path in paths:
        name = os.path.relpath(path, os.path.dirname(os.path.dirname(os.path.dirname(path))))
        try:
            docs = load_yaml(path)
        except Exception as e:  # noqa: BLE001 - any parse error is the finding
            fail(f"{name}: every document parses", str(e))
            continue
        check(f"{name}: every document parses ({len(docs)})", bool(docs), "empty")
        if len(docs) == 1 and "containers" in docs[0] and "kind" not in docs[0]:
            check_containers(f"{name} snippet", docs[0])
            continue
        kinds = {}
        for d in docs:
            check(f"{name}: {d.get('kind')} {d.get('metadata', {}).get('name')} has apiVersion, "
                  "kind, metadata.name",
                  all(k in d for k in ("apiVersion", "kind")) and "name" in d.get("metadata", {}),
                  "missing")
            kinds.setdefault(d.get("kind"), []).append(d)
        services = {s["metadata"]["name"]: s for s in kinds.get("Service", [])}
        sts_list = kinds.get("StatefulSet", [])
        check(f"{name}: one StatefulSet", len(sts_list) == 1, f"{len(sts_list)}")
        if not sts_list:
            continue
        sts = sts_list[0]
        sp = sts["spec"]
        tmpl = sp["template"]
        labels = tmpl["metadata"].get("labels", {})
        sel = sp["selector"]["matchLabels"]
        sname = sts["metadata"]["name"]
        where = f"StatefulSet {sname}"
        check(f"{name}: {where} has replicas 3", sp.get("replicas") == 3, f"{sp.get('replicas')}")
        check(f"{name}: {where} selector matches its pod labels", subset(sel, labels),
              f"{sel} vs {labels}")
        check(f"{name}: {where} starts members in parallel (a group needs a majority up to be "
              "ready)", sp.get("podManagementPolicy") == "Parallel", sp.get("podManagementPolicy"))
        hs = services.get(sp.get("serviceName"))
        check(f"{name}: {where} serviceName {sp.get('serviceName')} is a Service in the file",
              hs is not None, f"services {list(services)}")
        if hs:
            hsp = hs["spec"]
            check(f"{name}: Service {sp['serviceName']} is headless", hsp.get("clusterIP") == "None",
                  f"clusterIP {hsp.get('clusterIP')}")
            check(f"{name}: Service {sp['serviceName']} has publishNotReadyAddresses: true",
                  hsp.get("publishNotReadyAddresses") is True, f"{hsp.get('publishNotReadyAddresses')}")
        pdbs = kinds.get("PodDisruptionBudget", [])
        check(f"{name}: a PodDisruptionBudget", len(pdbs) == 1, f"{len(pdbs)}")
        for pdb in pdbs:
            ps = pdb["spec"]
            check(f"{name}: PDB {pdb['metadata']['name']} maxUnavailable 1",
                  ps.get("maxUnavailable") == 1, f"{ps}")
            check(f"{name}: PDB {pdb['metadata']['name']} selects the StatefulSet's labels",
                  ps.get("selector", {}).get("matchLabels") == sel,
                  f"{ps.get('selector')} vs {sel}")
        cs = check_containers(f"{where}", tmpl["spec"])
        all_ports = {}
        for c in cs:
            all_ports.update(container_ports(c))
        for s in services.values():
            ssp = s["spec"]
            sn = s["metadata"]["name"]
            check(f"{name}: Service {sn} selects the pods", subset(ssp.get("selector", {}), labels),
                  f"{ssp.get('selector')} vs {labels}")
            for p in ssp.get("ports", []):
                tp = p.get("targetPort", p["port"])
                check(f"{name}: Service {sn} port {p.get('name')} targets a declared port",
                      tp in all_ports if isinstance(tp, str) else tp in all_ports.values(),
                      f"targetPort {tp}, pod ports {all_ports}")
            ann = s["metadata"].get("annotations", {})
            if ann.get("prometheus.io/scrape") == "true":
                check(f"{name}: Service {sn} prometheus.io/port is one of its ports",
                      int(ann.get("prometheus.io/port", 0)) in [p["port"] for p in ssp["ports"]],
                      f"{ann}")
        ann = tmpl["metadata"].get("annotations", {})
        check(f"{name}: {where} pods carry prometheus.io scrape annotations for a declared port",
              ann.get("prometheus.io/scrape") == "true"
              and int(ann.get("prometheus.io/port", 0)) in all_ports.values(), f"{ann}")
        vcts = [v["metadata"]["name"] for v in sp.get("volumeClaimTemplates", [])]
        vols = [v["name"] for v in tmpl["spec"].get("volumes", [])]
        check(f"{name}: {where} has volumeClaimTemplates", bool(vcts), "none")
        for c in cs:
            for m in c.get("volumeMounts", []):
                check(f"{name}: {where} container {c['name']} mount {m['name']} is a volume or "
                      "claim template", m["name"] in vcts + vols, f"{vcts + vols}")
            text = command_text(c)
            data = re.search(r"--data\s+(\S+)", text)
            if data:
                mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in vcts]
                check(f"{name}: {where} container {c['name']} --data {data.group(1)} is on its "
                      "claim", any(data.group(1).startswith(mp.rstrip("/") + "/") for mp in mounts),
                      f"claim mounts {mounts}")
        prim = [c for c in cs if runs(c, "geokv-primary")]
        if prim and hs:
            text = command_text(prim[0])
            # expand the script's simple assignments (domain=...) to read the peer names
            for var, val in re.findall(r"^\s*([A-Za-z_]\w*)=(\S+)\s*$", text, re.M):
                text = re.sub(r"\$\{?" + var + r"\b\}?", lambda _m: val, text)
            want = [f"{i + 1}={sname}-{i}.{sp['serviceName']}." for i in range(sp["replicas"])]
            names_ok = all(w in text for w in want)
            check(f"{name}: {where} --peers names every member by its stable DNS name "
                  f"({sname}-N.{sp['serviceName']}...) with node id N+1", names_ok,
                  f"want {want} in the command")
            peer_port = re.search(r"--peers\s+\S*?:(\d+)", text)
            hs_ports = [p["port"] for p in hs["spec"].get("ports", [])]
            check(f"{name}: the headless Service carries the peer port",
                  peer_port is not None and int(peer_port.group(1)) in hs_ports,
                  f"peer port {peer_port and peer_port.group(1)}, service ports {hs_ports}")
            check(f"{name}: {where} node id comes from the hostname ordinal",
                  "HOSTNAME" in text and "--node-id" in text, "no --node-id from $HOSTNAME")


def cmd_json(paths):
    for p in paths:
        try:
            json.load(open(p, encoding="utf-8"))
            ok(f"{os.path.basename(p)} parses as JSON")
        except Exception as e:  # noqa: BLE001
            fail(f"{os.path.basename(p)} parses as JSON", str(e))


def the_pod(path):
    sts = [d for d in load_yaml(path) if d.get("kind") == "StatefulSet"][0]
    return sts["spec"]["template"]["spec"]


def cmd_pod_ports(path):
    for c in the_pod(path)["containers"]:
        for p in c.get("ports", []):
            print(p["containerPort"])


def opts(argv, name):
    return [argv[i + 1] for i, a in enumerate(argv) if a == name and i + 1 < len(argv)]


def cmd_pod(path, outdir, argv):
    env_given = dict(e.split("=", 1) for e in opts(argv, "--env"))
    subs = [s.split("=", 1) for s in opts(argv, "--sub")]
    ports = {int(a): int(b) for a, b in (p.split("=", 1) for p in opts(argv, "--port"))}

    def rewrite(s):
        s = str(s)
        for a, b in subs:
            s = s.replace(a, b)
        return re.sub(r"0\.0\.0\.0:(\d+)",
                      lambda m: f"127.0.0.1:{ports.get(int(m.group(1)), m.group(1))}", s)

    for c in the_pod(path)["containers"]:
        n = c["name"]
        words = [rewrite(w) for w in (c.get("command") or []) + (c.get("args") or [])]
        with open(os.path.join(outdir, n + ".argv"), "w", encoding="utf-8") as f:
            f.write("\0".join(words) + "\0")
        env = []
        for e in c.get("env", []):
            if "value" in e:
                env.append(f"{e['name']}={rewrite(e['value'])}")
            else:
                fp = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
                env.append(f"{e['name']}={env_given.get(fp, '')}")
        with open(os.path.join(outdir, n + ".env"), "w", encoding="utf-8") as f:
            f.write("".join(x + "\0" for x in env))
        cp = container_ports(c)
        with open(os.path.join(outdir, n + ".probes"), "w", encoding="utf-8") as f:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                if kind not in c:
                    continue
                t, port = probe_port(c[kind])
                port = cp.get(port, port) if isinstance(port, str) else port
                h = c[kind].get("httpGet", {})
                f.write(f"{kind} {t} {ports.get(port, port)} {h.get('path', '-')} "
                        f"{h.get('scheme', 'HTTP').lower()}\n")


# --- Dockerfile ------------------------------------------------------------------------------

def dockerfile_instructions(path):
    """[(stage index, INSTRUCTION, argument text)], continuation lines joined."""
    out, stage, buf = [], -1, ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, rest.strip()))
        buf = ""
    return out


def exec_form(text):
    try:
        v = json.loads(text)
        return v if isinstance(v, list) else None
    except ValueError:
        return None


def cmd_dockerfile(path, root, argv):
    ins = dockerfile_instructions(path)
    last = max(s for s, *_ in ins)
    final = [(w, a) for s, w, a in ins if s == last]
    name = "Dockerfile"
    users = [a for w, a in final if w == "USER"]
    user = users[-1].split(":")[0] if users else "root"
    check(f"{name}: the image runs as a non-root USER ({user})", user not in ("root", "0"),
          f"USER {users}")
    hcs = [a for w, a in final if w == "HEALTHCHECK"]
    check(f"{name}: has a HEALTHCHECK with a command",
          bool(hcs) and "CMD" in hcs[-1] and not hcs[-1].upper().startswith("NONE"), f"{hcs}")
    copies = []
    for w, a in final:
        if w in ("COPY", "ADD"):
            parts = exec_form(a) or a.split()
            from_build = any(p.startswith("--from") for p in parts)
            parts = [p for p in parts if not p.startswith("--")]
            copies.append((from_build, parts[:-1], parts[-1]))
    for s, w, a in ins:
        if w in ("COPY", "ADD") and "--from" not in a:
            parts = [p for p in (exec_form(a) or a.split()) if not p.startswith("--")]
            for src in parts[:-1]:
                if src != ".":
                    check(f"{name}: COPY source {src} exists", os.path.exists(os.path.join(root, src)),
                          "missing in the source tree")

    def provided(target):
        for fb, srcs, dest in copies:
            if target == dest or (dest.endswith("/") and target.startswith(dest)):
                return True
        return False

    eps = [exec_form(a) for w, a in final if w == "ENTRYPOINT"]
    ep = eps[-1] if eps else None
    check(f"{name}: ENTRYPOINT (exec form) is a file the image copies in",
          bool(ep) and provided(ep[0]), f"{ep}")
    hc_cmd = re.search(r"CMD\s+(.*)$", hcs[-1]) if hcs else None
    hc = exec_form(hc_cmd.group(1)) if hc_cmd else None
    check(f"{name}: HEALTHCHECK runs a file the image copies in", bool(hc) and provided(hc[0]),
          f"{hc}")
    # Ports: listen defaults of --help and the ports in the example configs' listen, advertise
    # and peers values (commented examples count: they are documented settings).
    allowed = set()
    for h in opts(argv, "--help"):
        for (sec, key), (kind, default) in parse_help(open(h, encoding="utf-8").read()).items():
            if "listen" in key and default:
                allowed.update(int(p) for p in re.findall(r":(\d+)$", default))
    for ini in opts(argv, "--ini"):
        for line in open(ini, encoding="utf-8"):
            m = INI_RE.match(line)
            if m and ("listen" in m.group(2) or m.group(2) in ("advertise", "peers")):
                allowed.update(int(p) for p in re.findall(r":(\d+)", m.group(3)))
    exposed = set()
    for w, a in final:
        if w == "EXPOSE":
            exposed.update(int(p.split("/")[0]) for p in a.split())
    check(f"{name}: EXPOSEs ports ({' '.join(map(str, sorted(exposed)))}), each one a daemon "
          "listens on by default or in the example configs", exposed and exposed <= allowed,
          f"not served: {sorted(exposed - allowed)} (served: {sorted(allowed)})")
    for k in opts(argv, "--k8s"):
        kp = set()
        for d in load_yaml(k):
            spec = d.get("spec", {}).get("template", {}).get("spec", {}) if d.get("kind") else d
            for c in spec.get("containers", []):
                kp.update(p["containerPort"] for p in c.get("ports", []))
        check(f"{name}: every containerPort of {os.path.basename(k)} is EXPOSEd", kp <= exposed,
              f"not exposed: {sorted(kp - exposed)}")
    apt = set()
    for w, a in final:
        if w == "RUN" and "apt-get install" in a:
            seg = a.split("apt-get install", 1)[1].split("&&")[0]
            apt.update(x for x in seg.split() if not x.startswith("-"))
    need = set(opts(argv, "--need"))
    check(f"{name}: the runtime stage installs the package of every shared library the daemons "
          f"and the CLI link ({len(need)} packages)", need and need <= apt,
          f"missing: {sorted(need - apt)}")
    check(f"{name}: curl, which the HEALTHCHECK uses for the gateway, is installed",
          "curl" in apt, f"apt: {sorted(apt)}")


def main(argv):
    cmd = argv[1]
    if cmd == "ini":
        cmd_ini(argv[2], argv[3], argv[4])
    elif cmd == "k8s":
        cmd_k8s(argv[2:])
    elif cmd == "json":
        cmd_json(argv[2:])
    elif cmd == "pod-ports":
        cmd_pod_ports(argv[2])
    elif cmd == "pod":
        cmd_pod(argv[2], argv[3], argv[4:])
    elif cmd == "dockerfile":
        cmd_dockerfile(argv[2], argv[3], argv[4:])
    else:
        sys.exit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main(sys.argv)
