#!/usr/bin/env python3
"""Compares two OCI runtime specs (dockerd's, berthd's) field by field for
the isolation they give a container: capabilities, seccomp (rules
normalized per syscall), AppArmor, no-new-privileges, masked and read-only
paths, devices and device cgroup rules, namespaces, sysctls and mounts.
Prints `same` or the differences for each field; paths that name each
daemon's own directories are not compared.

    spec_compare.py DOCKERD_CONFIG_JSON BERTHD_CONFIG_JSON
"""

import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def show(name, a, b):
    if a == b:
        print(f"{name}: same")
        return True
    print(f"{name}: DIFFERS")
    print(f"  dockerd: {json.dumps(a)}")
    print(f"  berthd:  {json.dumps(b)}")
    return False


def show_sets(name, a, b):
    a, b = set(a or []), set(b or [])
    if a == b:
        print(f"{name}: same ({len(a)})")
        return True
    print(f"{name}: DIFFERS")
    if a - b:
        print(f"  only dockerd: {sorted(a - b)}")
    if b - a:
        print(f"  only berthd:  {sorted(b - a)}")
    return False


def seccomp_rules(sc):
    """syscall name -> sorted list of (action, errnoRet, args) it has."""
    rules = {}
    for r in (sc or {}).get("syscalls") or []:
        key = json.dumps(
            {
                "action": r.get("action"),
                "errnoRet": r.get("errnoRet"),
                "args": r.get("args") or [],
            },
            sort_keys=True,
        )
        for n in r.get("names") or []:
            rules.setdefault(n, []).append(key)
    return {n: sorted(v) for n, v in rules.items()}


def compare_seccomp(a, b):
    same = True
    if (a is None) != (b is None):
        return show("linux.seccomp", a is not None, b is not None)
    for field in ("defaultAction", "defaultErrnoRet", "architectures", "flags"):
        same &= show(f"linux.seccomp.{field}", a.get(field), b.get(field))
    ra, rb = seccomp_rules(a), seccomp_rules(b)
    only_a = sorted(set(ra) - set(rb))
    only_b = sorted(set(rb) - set(ra))
    both = sorted(n for n in set(ra) & set(rb) if ra[n] != rb[n])
    common = len(set(ra) & set(rb)) - len(both)
    print(
        f"linux.seccomp.syscalls: {common} syscalls with identical rules, "
        f"{len(only_a)} only in dockerd's, {len(only_b)} only in berthd's, "
        f"{len(both)} with different rules"
    )
    if only_a:
        print(f"  only dockerd: {only_a}")
    if only_b:
        print(f"  only berthd:  {only_b}")
    for n in both:
        print(f"  {n}:")
        print(f"    dockerd: {ra[n]}")
        print(f"    berthd:  {rb[n]}")
    return same and not (only_a or only_b or both)


def mounts_by_dest(spec):
    out = {}
    for m in spec.get("mounts") or []:
        src = m.get("source", "")
        # Per-daemon files (hosts, resolv.conf, hostname, shm dirs) live
        # under each daemon's own roots.
        if "/dockerd/" in src or "/berthd/" in src:
            src = "<daemon's own file>"
        out[m["destination"]] = {
            "type": m.get("type"),
            "source": src,
            "options": m.get("options"),
        }
    return out


def main():
    d, b = load(sys.argv[1]), load(sys.argv[2])
    dp, bp = d.get("process", {}), b.get("process", {})
    dl, bl = d.get("linux", {}), b.get("linux", {})

    print("== capabilities ==")
    dc, bc = dp.get("capabilities") or {}, bp.get("capabilities") or {}
    for s in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        show_sets(f"process.capabilities.{s}", dc.get(s), bc.get(s))

    print("\n== process ==")
    for f in ("noNewPrivileges", "apparmorProfile", "oomScoreAdj", "rlimits", "user"):
        show(f"process.{f}", dp.get(f), bp.get(f))

    print("\n== seccomp ==")
    compare_seccomp(dl.get("seccomp"), bl.get("seccomp"))

    print("\n== masked and read-only paths ==")
    show("linux.maskedPaths (in order)", dl.get("maskedPaths"), bl.get("maskedPaths"))
    show("linux.readonlyPaths (in order)", dl.get("readonlyPaths"), bl.get("readonlyPaths"))

    print("\n== devices ==")
    show("linux.devices", dl.get("devices") or [], bl.get("devices") or [])
    show(
        "linux.resources.devices",
        (dl.get("resources") or {}).get("devices"),
        (bl.get("resources") or {}).get("devices"),
    )

    print("\n== namespaces, sysctls ==")
    show_sets(
        "linux.namespaces",
        [n["type"] + (" (path)" if n.get("path") else "") for n in dl.get("namespaces") or []],
        [n["type"] + (" (path)" if n.get("path") else "") for n in bl.get("namespaces") or []],
    )
    show("linux.sysctl", dl.get("sysctl"), bl.get("sysctl"))
    show("linux.uidMappings", dl.get("uidMappings"), bl.get("uidMappings"))

    print("\n== mounts ==")
    dm, bm = mounts_by_dest(d), mounts_by_dest(b)
    for dest in sorted(set(dm) | set(bm)):
        show(f"mount {dest}", dm.get(dest), bm.get(dest))
    show(
        "mount order",
        [m["destination"] for m in d.get("mounts") or []],
        [m["destination"] for m in b.get("mounts") or []],
    )


if __name__ == "__main__":
    main()
