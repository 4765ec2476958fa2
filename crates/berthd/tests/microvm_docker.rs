//! The docker CLI against a berthd inside berth-testkit's qemu microVM, for
//! what this host's kernel lacks: `--storage-opt size=` on devicemapper
//! (dm-thin) and on overlay2/vfs over xfs with project quota, each across a
//! berthd restart, and `docker stats` on cgroup v2. The guest's root is the
//! initramfs, where pivot_root cannot work: berthd runs with dockerd's
//! `DOCKER_RAMDISK=1` (the runtime chroots instead) and `--bridge=none`.
//! Each test boots one VM running a shell script; the script's lines
//! `CHECK <name> <value>` are what the host asserts on.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use berth_testkit::busybox;
use berth_testkit::microvm::{MicroVm, Output, Payload};

/// berthd, its shim, runc, the docker CLI, the tools the drivers call and
/// the busybox image as a docker-save archive.
fn payload() -> Payload {
    let image = busybox::image().expect("busybox image").build();
    Payload::new()
        .binary(env!("CARGO_BIN_EXE_berthd"), "berthd")
        .binary(
            Path::new(env!("CARGO_BIN_EXE_berthd")).with_file_name("berth-shim"),
            "berth-shim",
        )
        .file("/usr/local/bin/docker", "/payload/bin/docker")
        .tool("runc")
        .tool("mkfs.xfs")
        .tool("xfs_growfs")
        .tool("xfs_quota")
        .tool("mkfs.ext4")
        .tool("resize2fs")
        .bytes(image.bytes, "/busybox.tar")
        .env("DOCKER_RAMDISK", "1")
        .env("DOCKER_HOST", "unix:///run/berth.sock")
}

/// Shell functions every script starts with: `start` runs berthd with the
/// given flags and waits for its socket, `stop` ends it, `check` prints a
/// result line.
const PRELUDE: &str = r#"
set -u
mkdir -p /etc /root
start() {
    berthd --data-root /var/lib/berth --exec-root /run/berth --bridge=none \
        --iptables=false -H unix:///run/berth.sock "$@" >>/tmp/berthd.log 2>&1 &
    echo $! > /tmp/berthd.pid
    i=0
    until docker version >/dev/null 2>&1; do
        i=$((i+1))
        if [ $i -gt 600 ] || ! kill -0 "$(cat /tmp/berthd.pid)" 2>/dev/null; then
            echo "berthd did not start:"; tail -n 30 /tmp/berthd.log; exit 1
        fi
        sleep 0.1
    done
}
stop() {
    kill "$(cat /tmp/berthd.pid)"
    while kill -0 "$(cat /tmp/berthd.pid)" 2>/dev/null; do sleep 0.1; done
}
check() { echo "CHECK $1 $2"; }
fail() { echo "FAILED: $*"; tail -n 30 /tmp/berthd.log; exit 1; }
"#;

fn run(vm: MicroVm, script: &str) -> (Output, HashMap<String, String>) {
    let out = vm
        .run_script(&format!("{PRELUDE}{script}"), &payload())
        .expect("microVM");
    let checks = out
        .script_output()
        .lines()
        .filter_map(|l| l.strip_prefix("CHECK "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    (out, checks)
}

fn vm() -> MicroVm {
    MicroVm::new()
        .memory_mib(2048)
        .timeout(Duration::from_secs(900))
}

#[test]
fn devicemapper_size_through_the_docker_cli() {
    berth_testkit::require_root();
    let (out, checks) = run(
        vm(),
        r#"
start -s devicemapper
docker info --format '{{range .DriverStatus}}{{if eq (index . 0) "Base Device Size"}}{{index . 1}}{{end}}{{end}}' > /tmp/base
check default_base "$(cat /tmp/base)"
docker load -i /busybox.tar >/dev/null || fail load
check below_base "$(docker run --rm --storage-opt size=20M berth-test/busybox true 2>&1 | head -n1)"
stop
rm -rf /var/lib/berth
start -s devicemapper --storage-opt dm.basesize=100M --storage-opt dm.fs=ext4
docker load -i /busybox.tar >/dev/null || fail load
check df_default "$(docker run --rm berth-test/busybox df -m / | awk 'NR==2 {print $2}')"
check free_write "$(docker run --rm berth-test/busybox sh -c 'dd if=/dev/zero of=/big bs=1M count=50 2>/dev/null && echo ok')"
docker create --name limited --storage-opt size=160M berth-test/busybox sh -c \
    'df -m / | awk "NR==2 {print \$2}"; dd if=/dev/zero of=/big bs=1M count=250 2>&1; ls -l /big' >/dev/null
stop
start -s devicemapper --storage-opt dm.basesize=100M --storage-opt dm.fs=ext4
docker start -a limited > /tmp/limited 2>&1
cat /tmp/limited
check df_limited "$(head -n1 /tmp/limited)"
grep -q "No space left on device" /tmp/limited && check limited_refused yes
check written_mb "$(awk '$NF == "/big" {print int($5/1048576)}' /tmp/limited)"
docker rm limited >/dev/null
stop
"#,
    );
    out.assert_success();
    assert_eq!(checks["default_base"], "10.74GB", "{}", out.script_output());
    assert!(
        checks["below_base"].contains("cannot be smaller than"),
        "{}",
        out.script_output()
    );
    let df: u64 = checks["df_default"].parse().unwrap();
    assert!((85..=100).contains(&df), "df -m of a 100M ext4 base: {df}");
    assert_eq!(checks["free_write"], "ok");
    let df: u64 = checks["df_limited"].parse().unwrap();
    assert!((140..=160).contains(&df), "df -m of size=160M: {df}");
    assert_eq!(checks["limited_refused"], "yes");
    let written: u64 = checks["written_mb"].parse().unwrap();
    assert!((120..=160).contains(&written), "wrote {written} MB");
}

/// A loop-mounted xfs with project quota as the data root, then the size
/// checks for `driver`: `df` inside shows the limit, a limited container's
/// write ends near 20 MB (also when started after a berthd restart), an
/// unlimited one writes 50 MB.
fn xfs_quota_size_checks(driver: &str) {
    berth_testkit::require_root();
    let script = format!(
        r#"
truncate -s 400M /tmp/xfs.img
mkfs.xfs -q /tmp/xfs.img || fail mkfs
mkdir -p /var/lib/berth
mount -o loop,prjquota /tmp/xfs.img /var/lib/berth || fail mount
start -s {driver}
docker load -i /busybox.tar >/dev/null || fail load
check df_limited "$(docker run --rm --storage-opt size=20M berth-test/busybox df -m / | awk 'NR==2 {{print $2}}')"
check free_write "$(docker run --rm berth-test/busybox sh -c 'dd if=/dev/zero of=/big bs=1M count=50 2>/dev/null && echo ok')"
docker create --name limited --storage-opt size=20M berth-test/busybox sh -c \
    'dd if=/dev/zero of=/big bs=1M count=50 2>&1; ls -l /big' >/dev/null
stop
start -s {driver}
docker start -a limited > /tmp/limited 2>&1
cat /tmp/limited
grep -q -e "Disk quota exceeded" -e "No space left on device" /tmp/limited && check limited_refused yes
check written_mb "$(awk '$NF == "/big" {{print int($5/1048576)}}' /tmp/limited)"
docker rm limited >/dev/null
stop
umount /var/lib/berth
"#
    );
    let (out, checks) = run(vm(), &script);
    out.assert_success();
    let text = out.script_output();
    let df: u64 = checks["df_limited"].parse().expect(text);
    assert!((18..=20).contains(&df), "df -m of size=20M: {df}\n{text}");
    assert_eq!(checks["free_write"], "ok", "{text}");
    assert_eq!(checks["limited_refused"], "yes", "{text}");
    let written: u64 = checks["written_mb"].parse().expect(text);
    assert!((15..=20).contains(&written), "wrote {written} MB\n{text}");
}

#[test]
fn overlay2_on_xfs_pquota_size_through_the_docker_cli() {
    xfs_quota_size_checks("overlay2");
}

#[test]
fn vfs_on_xfs_pquota_size_through_the_docker_cli() {
    xfs_quota_size_checks("vfs");
}

/// `docker stats` on cgroup v2: a busy loop reads as what its cgroup used, a
/// container holding 100 MB (in a tmpfs it mounted, so charged to it) as
/// about 100 MB, within 5% of what its cgroup files say.
#[test]
fn docker_stats_on_cgroup_v2() {
    berth_testkit::require_root();
    let (out, checks) = run(
        vm(),
        r#"
mkdir -p /var/lib/berth
start -s vfs
docker load -i /busybox.tar >/dev/null || fail load
docker run -d --name busy berth-test/busybox sh -c 'while :; do :; done' >/dev/null
docker run -d --name mem --tmpfs /hold:size=200m berth-test/busybox sh -c \
    'head -c 104857600 /dev/zero > /hold/data && echo held && sleep 1000' >/dev/null
until docker logs mem 2>&1 | grep -q held; do sleep 0.2; done
sleep 3
docker stats --no-stream --format '{{.Name}} {{.CPUPerc}} {{.MemUsage}}'
bid=$(docker inspect --format '{{.Id}}' busy)
bdir=$(find /sys/fs/cgroup -type d -name "*$bid*" | head -n1)
usage() { awk '$1 == "usage_usec" {print $2}' $bdir/cpu.stat; }
u0=$(usage); sleep 2; u1=$(usage)
check busy_cgroup_pct "$(( (u1 - u0) / 20000 ))"
check busy_cpu "$(docker stats --no-stream --format '{{.CPUPerc}}' busy | tr -d %)"
check mem_usage "$(docker stats --no-stream --format '{{.MemUsage}}' mem | cut -d' ' -f1)"
id=$(docker inspect --format '{{.Id}}' mem)
dir=$(find /sys/fs/cgroup -type d -name "*$id*" | head -n1)
current=$(cat $dir/memory.current)
inactive=$(awk '$1 == "inactive_file" {print $2}' $dir/memory.stat)
check cgroup_mib "$(( (current - inactive) / 1048576 ))"
check cgroup_version "$(docker info --format '{{.CgroupVersion}}')"
docker rm -f busy mem >/dev/null
stop
"#,
    );
    out.assert_success();
    let text = out.script_output();
    assert_eq!(checks["cgroup_version"], "2", "{text}");
    // The guest has one emulated CPU, shared with berthd and the CLI and
    // slowed by whatever else the host runs: the busy loop gets what is
    // left, so it is checked against its cgroup's own usage over the same
    // moments, not against 100%.
    let cpu: f64 = checks["busy_cpu"].parse().expect(text);
    let cgroup_cpu: f64 = checks["busy_cgroup_pct"].parse().expect(text);
    assert!(cpu > 30.0 && cpu < 110.0, "busy loop at {cpu}%\n{text}");
    assert!(
        (cpu - cgroup_cpu).abs() <= 25.0,
        "stats {cpu}% vs cgroup {cgroup_cpu}%\n{text}"
    );
    let usage = checks["mem_usage"].trim_end_matches("MiB");
    let usage: f64 = usage.parse().expect(text);
    let cgroup: f64 = checks["cgroup_mib"].parse().expect(text);
    assert!((95.0..=115.0).contains(&usage), "{usage} MiB\n{text}");
    assert!(
        (usage - cgroup).abs() <= cgroup * 0.05,
        "stats {usage} MiB vs cgroup {cgroup} MiB\n{text}"
    );
}
