//! The prerequisite checks of `ops/scripts/common.sh`, which the README's
//! two commands and `.ci/run` run first, tested against fake directory
//! layouts and stub commands, so a wrong check fails on any machine, not
//! only on a fresh one.
//!
//! Each case runs bash with `PATH` holding only stubs (an `apt-get` that
//! records its arguments and "installs" by creating files in the fake
//! root, an `id` that says who runs it), so nothing of the real machine
//! leaks in.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn common_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/common.sh")
}

/// A fake machine: a root directory and a bin directory of stubs.
struct Machine {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    apt_log: PathBuf,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let bin = dir.path().join("bin");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&bin).unwrap();
        let apt_log = dir.path().join("apt.log");
        let machine = Self {
            _dir: dir,
            root,
            bin,
            apt_log,
        };
        // What common.sh runs besides builtins.
        for tool in ["mkdir", "dirname"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} not found"));
            std::os::unix::fs::symlink(real, machine.bin.join(tool)).unwrap();
        }
        machine.stub("cargo", "exit 0");
        machine.stub("c++", "exit 0");
        machine.stub("make", "exit 0");
        machine
    }

    fn stub(&self, name: &str, body: &str) {
        let path = self.bin.join(name);
        fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn remove_stub(&self, name: &str) {
        fs::remove_file(self.bin.join(name)).unwrap();
    }

    /// Creates `path` (relative to the fake root) as an empty file.
    fn file(&self, path: &str) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    /// An `id` saying the user is `uid`, and an `apt-get` that records its
    /// arguments and, on install, creates `installs` in the fake root.
    fn as_user(&self, uid: u32, installs: &[&str]) {
        self.stub("id", &format!("echo {uid}"));
        let creates: String = installs
            .iter()
            .map(|p| {
                let p = self.root.join(p);
                format!(
                    "mkdir -p '{}'; : > '{}'\n",
                    p.parent().unwrap().display(),
                    p.display()
                )
            })
            .collect();
        self.stub(
            "apt-get",
            &format!(
                "echo \"$*\" >> '{}'\nif [ \"$1\" = install ]; then\n{creates}fi",
                self.apt_log.display()
            ),
        );
    }

    fn run(&self, script: &str) -> Output {
        Command::new("/bin/bash")
            .arg("-c")
            .arg(format!("source '{}'\n{script}", common_sh().display()))
            .env_clear()
            .env("PATH", &self.bin)
            .env("HOME", self.root.join("home"))
            .env("SLUICE_PREREQ_ROOT", &self.root)
            .output()
            .unwrap()
    }

    /// What `find_libclang` prints, or None when it finds nothing.
    fn find_libclang(&self) -> Option<String> {
        let out = self.run("find_libclang \"$SLUICE_PREREQ_ROOT\"");
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
    }

    fn apt_calls(&self) -> String {
        fs::read_to_string(&self.apt_log).unwrap_or_default()
    }

    /// A `python3` whose `-c 'import moto.server'` succeeds once moto is installed (from
    /// the start when `moto` is true) and whose `-m pip` records its arguments, "installs"
    /// on `install` and, when `pip` is false, is missing.
    fn python(&self, moto: bool, pip: bool) {
        let marker = self.root.join("moto-installed");
        if moto {
            fs::write(&marker, b"").unwrap();
        }
        self.stub(
            "python3",
            &format!(
                "if [ \"$1\" = -c ] && [ \"$2\" = 'import moto.server' ]; then\n\
                 [ -e '{marker}' ]; exit $?\n\
                 fi\n\
                 if [ \"$1\" = -m ] && [ \"$2\" = pip ] && {pip}; then\n\
                 shift 2\n\
                 echo \"PIP_BREAK_SYSTEM_PACKAGES=$PIP_BREAK_SYSTEM_PACKAGES $*\" >> '{log}'\n\
                 if [ \"$1\" = install ]; then : > '{marker}'; fi\n\
                 exit 0\n\
                 fi\n\
                 exit 1",
                marker = marker.display(),
                log = self.pip_log().display(),
            ),
        );
    }

    fn pip_log(&self) -> PathBuf {
        self.root.join("pip.log")
    }

    /// The `python3 -m pip` calls but `--version`.
    fn pip_installs(&self) -> String {
        fs::read_to_string(self.pip_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.ends_with("--version"))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    // What a fresh Debian machine with the Rust toolchain has: the C++ API
    // library (package libclang-cpp14), which bindgen cannot load.
    let m = Machine::new();
    m.file("usr/lib/llvm-14/lib/libclang-cpp.so.14");
    m.file("usr/lib/x86_64-linux-gnu/libclang-cpp.so.14");
    m.file("usr/lib/llvm-14/lib/libLLVM-14.so");
    assert_eq!(m.find_libclang(), None);
}

#[test]
fn every_name_bindgen_loads_is_found() {
    for path in [
        "usr/lib/llvm-14/lib/libclang.so",
        "usr/lib/llvm-16/lib/libclang-16.so",
        "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
        "usr/lib/llvm-14/lib/libclang.so.1",
        "usr/lib64/libclang.so",
        "usr/local/lib/libclang.so.17",
    ] {
        let m = Machine::new();
        m.file("usr/lib/llvm-14/lib/libclang-cpp.so.14");
        m.file(path);
        let found = m.find_libclang();
        assert_eq!(
            found.as_deref(),
            Some(m.root.join(path).to_str().unwrap()),
            "{path}"
        );
    }
}

#[test]
fn libclang_path_is_honoured() {
    let m = Machine::new();
    m.file("opt/llvm/lib/libclang.so");
    let dir = m.root.join("opt/llvm/lib");
    let out = m.run(&format!(
        "LIBCLANG_PATH='{}' find_libclang \"$SLUICE_PREREQ_ROOT\"",
        dir.display()
    ));
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("opt/llvm/lib/libclang.so"));
}

#[test]
fn root_installs_libclang_dev_when_only_libclang_cpp_is_there() {
    let m = Machine::new();
    m.file("usr/lib/llvm-14/lib/libclang-cpp.so.14");
    m.as_user(0, &["usr/lib/llvm-14/lib/libclang.so"]);
    let out = m.run("ensure_build_deps && echo ready");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    let calls = m.apt_calls();
    assert!(calls.contains("install -y -qq libclang-dev"), "{calls}");
}

#[test]
fn root_reports_a_libclang_the_install_did_not_provide() {
    let m = Machine::new();
    m.as_user(0, &[]);
    let out = m.run("ensure_build_deps && echo ready");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("still missing") && err.contains("LIBCLANG_PATH"),
        "{err}"
    );
}

#[test]
fn a_user_gets_the_exact_command_and_nothing_is_installed() {
    let m = Machine::new();
    m.remove_stub("c++");
    m.as_user(1000, &[]);
    let out = m.run("ensure_build_deps && echo ready");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run:   sudo apt-get install -y libclang-dev g++"),
        "{err}"
    );
    assert_eq!(m.apt_calls(), "");
}

#[test]
fn nothing_is_installed_when_everything_is_there() {
    let m = Machine::new();
    m.file("usr/lib/llvm-14/lib/libclang.so");
    m.stub("ip", "exit 0");
    m.python(true, true);
    m.as_user(0, &[]);
    let out = m.run("ensure_build_deps && ensure_test_deps && echo ready");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(m.apt_calls(), "");
    assert_eq!(m.pip_installs(), "");
}

#[test]
fn the_test_command_installs_iproute2_for_the_partition_tests() {
    let m = Machine::new();
    m.python(true, true);
    m.as_user(0, &["usr/bin/ip"]);
    let out = m.run("ensure_test_deps && echo ready");
    assert!(out.status.success(), "{out:?}");
    assert!(m.apt_calls().contains("install -y -qq iproute2"));
}

#[test]
fn the_test_command_installs_moto_when_python_cannot_import_it() {
    let m = Machine::new();
    m.stub("ip", "exit 0");
    m.python(false, true);
    m.as_user(0, &[]);
    let out = m.run("ensure_test_deps && echo ready");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    let installs = m.pip_installs();
    assert_eq!(installs.lines().count(), 1, "{installs}");
    assert!(
        installs.starts_with("PIP_BREAK_SYSTEM_PACKAGES=1 install")
            && installs.contains("moto[server]"),
        "{installs}"
    );
    // A second run finds moto and installs nothing more.
    let out = m.run("ensure_test_deps && echo ready");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(m.pip_installs(), installs);
}

#[test]
fn moto_is_left_alone_when_python_imports_it() {
    for uid in [0, 1000] {
        let m = Machine::new();
        m.stub("ip", "exit 0");
        m.python(true, true);
        m.as_user(uid, &[]);
        let out = m.run("ensure_test_deps && echo ready");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(m.pip_installs(), "", "uid {uid}");
        assert_eq!(m.apt_calls(), "", "uid {uid}");
    }
}

#[test]
fn a_user_gets_the_pip_command_for_moto_and_nothing_is_installed() {
    let m = Machine::new();
    m.stub("ip", "exit 0");
    m.python(false, true);
    m.as_user(1000, &[]);
    let out = m.run("ensure_test_deps && echo ready");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run:   python3 -m pip install 'moto[server]'"),
        "{err}"
    );
    assert_eq!(m.pip_installs(), "");
}

#[test]
fn a_missing_pip_or_python_gets_the_commands_to_install_them_and_moto() {
    for python in [true, false] {
        let m = Machine::new();
        m.stub("ip", "exit 0");
        if python {
            m.python(false, false);
        }
        m.as_user(0, &[]);
        let out = m.run("ensure_test_deps && echo ready");
        assert!(!out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "run:   sudo apt-get install -y python3 python3-pip && \
                 python3 -m pip install 'moto[server]'"
            ),
            "python3 present: {python}: {err}"
        );
        assert_eq!(m.pip_installs(), "");
    }
}
