//! The microVM harness itself: a boot runs the script with dm-thin and XFS
//! available, returns its output and exit status over the serial console,
//! carries payload files, and a timeout kills qemu instead of hanging.

use std::time::Duration;

use berth_testkit::microvm::{MicroVm, Payload};

#[test]
fn script_runs_with_device_mapper_and_xfs_quota() {
    berth_testkit::require_root();
    let script = r#"
cat /payload/greeting
test -c /dev/mapper/control && echo dm-control-present
grep -q xfs /proc/filesystems && echo xfs-present
truncate -s 320M /tmp/x.img && mkfs.xfs -q /tmp/x.img && mkdir /x && mount -t xfs -o loop,pquota /tmp/x.img /x && echo pquota-mounted
umount /x
exit 7
"#;
    let payload = Payload::new()
        .tool("mkfs.xfs")
        .bytes("hello from the host\n", "/payload/greeting");
    let out = MicroVm::run(script, &payload).expect("the harness runs");
    let text = out.script_output();
    assert_eq!(out.exit_code, Some(7), "console:\n{}", out.console);
    for want in [
        "hello from the host",
        "dm-control-present",
        "xfs-present",
        "pquota-mounted",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{}", out.console);
    }
}

#[test]
fn timeout_kills_the_vm() {
    berth_testkit::require_root();
    let out = MicroVm::new()
        .timeout(Duration::from_secs(2))
        .run_script("sleep 600", &Payload::new())
        .expect("the harness runs");
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(out.elapsed < Duration::from_secs(30));
}
