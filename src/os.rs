//! The only unsafe code in mailkit: the few libc calls the daemons and `auth` need and std does
//! not wrap. Each function is small, checks its inputs, and states why its unsafe blocks are
//! sound. A leaf module, so every layer may use it.
//!
//! - [`default_sigchld`]: undo an inherited `SIGCHLD` ignore, so children can be waited for.
//! - [`take_listen_fd`]: adopt a listening socket inherited through systemd socket activation
//!   (`sd_listen_fds(3)`: fds 3, 4, ... are ours once `LISTEN_PID` names us).
//! - [`drop_privileges`]: after binding, switch from root to the configured user and group
//!   (setgroups, setgid, setuid, in that order, and verify it cannot be undone).
//! - [`resolve_ids`], [`lookup_user`], [`lookup_group`]: the reentrant passwd/group lookups behind it.
//! - [`readable_within`]: wait, with a time limit, until a blocking fd (msend `-bs`'s stdin)
//!   has input (poll(2), through rustix: no unsafe needed).
//! - [`inotify_dirs`], [`inotify_drain`], [`on_network_fs`]: the change notification behind
//!   `maildir::watch` (inotify(7) and statfs(2), through rustix: no unsafe needed), and
//!   [`async_fd`], which hands the inotify fd to tokio's reactor (its `register` is unsafe only
//!   because it cannot know the fd is owned; an `OwnedFd` is).

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Fds already adopted by [`take_listen_fd`], so no fd is ever owned twice.
static TAKEN: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// First fd systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Adopts inherited fd `fd` (≥ 3) as a listening TCP socket, marks it close-on-exec (so pipe
/// children such as mdeliver do not inherit it) and non-blocking. Fails when the fd is not open,
/// not a socket, not listening, or was already taken.
pub fn take_listen_fd(fd: RawFd) -> io::Result<std::net::TcpListener> {
    if fd < LISTEN_FDS_START {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket-activation fd"),
        ));
    }
    // SAFETY: fcntl on an arbitrary integer is sound: an fd that is not open gives EBADF and
    // touches nothing.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `accepting` and `len` are valid, writable and sized for an int option; a non-socket
    // fd gives ENOTSOCK.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut accepting as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a listening socket"),
        ));
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    if taken.contains(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("fd {fd} was already taken"),
        ));
    }
    // SAFETY: setting FD_CLOEXEC on an fd we just checked is open only changes its flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open (F_GETFD succeeded), is a socket, and by the socket-activation
    // protocol belongs to this process and nothing else in it: the TAKEN set guarantees we
    // create at most one owner for it, so it is closed exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    taken.insert(fd);
    let listener = std::net::TcpListener::from(owned);
    // An AF_UNIX socket would fail here: mailkit only serves TCP.
    listener.local_addr()?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Waits up to `timeout` for `fd` to have input, end of file or an error to report (poll(2)
/// `POLLIN`, which `POLLHUP`/`POLLERR` also wake): `true` when a read will not block, `false`
/// when the time ran out. A regular file is always readable. Interrupted waits are resumed
/// with the time left.
pub fn readable_within(
    fd: std::os::fd::BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let until = std::time::Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        let limit = Timespec::try_from(left)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "timeout too large"))?;
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&limit)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets `SIGCHLD` back to its default action. An ignored `SIGCHLD` survives exec(2), and a
/// parent that ignores it (swaks `--pipe`, some supervisors and inetd-like wrappers) would make
/// the kernel reap our children itself (POSIX: SA_NOCLDWAIT semantics), so every wait for a
/// content filter, pipe alias or password command fails with ECHILD and the mail is
/// tempfailed or lost. Postfix and qmail reset it the same way at start.
pub fn default_sigchld() {
    // SAFETY: signal(2) with a valid signal number and SIG_DFL has no memory effects; it runs
    // first thing in main, and the previous handler (SIG_IGN or SIG_DFL, nothing of ours) is
    // not needed.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// First buffer size for getpwnam_r/getgrnam_r (enough for ordinary entries).
const NSS_BUF_START: usize = 4096;
/// The buffer is doubled on ERANGE up to this size (a group with very many members).
const NSS_BUF_MAX: usize = 1 << 20;

/// A `get*nam_r(3)` function: name, result struct, buffer, its length, out pointer.
type NssGet<E> = unsafe extern "C" fn(
    *const libc::c_char,
    *mut E,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut E,
) -> libc::c_int;

/// The one reentrant name lookup behind [`lookup_user`] and [`lookup_group`]: calls `get`
/// (getpwnam_r or getgrnam_r, through NSS, so users from LDAP or extrausers count as well as
/// /etc/passwd), doubling the buffer on ERANGE, and hands the entry to `pick` while its
/// strings are still valid. `E` must be a plain C struct for which all-zero bytes are a value
/// (`passwd`, `group`).
fn nss_lookup<E, R>(
    what: &str,
    name: &str,
    get: NssGet<E>,
    pick: fn(&E) -> R,
) -> io::Result<Option<R>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL in {what} name")))?;
    let mut buf = vec![0u8; NSS_BUF_START];
    loop {
        // SAFETY: the callers instantiate E only with passwd and group, plain C structs of
        // integers and pointers, for which all-zero bytes are a valid value.
        let mut entry: E = unsafe { std::mem::zeroed() };
        let mut result: *mut E = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call; `buf` outlives it and its length is
        // passed; on success `result` points at `entry`, whose strings point into `buf`.
        let rc = unsafe {
            get(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < NSS_BUF_MAX {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // `buf` is still alive here, so `pick` may read the entry's strings.
        return Ok(Some(pick(&entry)));
    }
}

/// A user from the passwd database (NSS): (uid, primary gid); None when there is no such user.
pub fn lookup_user(name: &str) -> io::Result<Option<(u32, u32)>> {
    nss_lookup("user", name, libc::getpwnam_r, |p: &libc::passwd| {
        (p.pw_uid, p.pw_gid)
    })
}

/// A group's gid from the group database (NSS); None when there is no such group.
pub fn lookup_group(name: &str) -> io::Result<Option<u32>> {
    nss_lookup("group", name, libc::getgrnam_r, |g: &libc::group| g.gr_gid)
}

/// The (uid, gid) a `[run_as]` user and optional group name stand for (default group: the
/// user's primary group); NotFound when either does not exist.
pub fn resolve_ids(user: &str, group: Option<&str>) -> io::Result<(u32, u32)> {
    let (uid, primary_gid) = lookup_user(user)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such user {user:?}")))?;
    let gid = match group {
        Some(g) => lookup_group(g)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no such group {g:?}"))
        })?,
        None => primary_gid,
    };
    Ok((uid, gid))
}

/// Switches the whole process (all threads: glibc broadcasts set*id) to `user` and `group`
/// (default: the user's primary group), supplementary groups reduced to that one group.
/// Order matters: groups first, uid last, because after setuid we may no longer change groups.
/// A target of uid 0 is refused (PermissionDenied). Afterwards verifies that real and effective
/// ids are the target and that regaining root fails. Any failure is an error: the caller must not go on serving.
pub fn drop_privileges(user: &str, group: Option<&str>) -> io::Result<(u32, u32)> {
    let (uid, gid) = resolve_ids(user, group)?;
    // "Dropping" to root would keep every privilege: never a valid target.
    if uid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("user {user:?} is root (uid 0)"),
        ));
    }
    let groups = [gid as libc::gid_t];
    // SAFETY: `groups` is a valid array of the given length for the duration of the call.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setgid/setuid take plain integers and report failure through the return value.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the get*id calls have no preconditions and cannot fail.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    if ruid != uid || euid != uid || rgid != gid || egid != gid {
        return Err(io::Error::other(format!(
            "ids after the switch are uid {ruid}/{euid} gid {rgid}/{egid}, not {uid}/{gid}"
        )));
    }
    // SAFETY: as above; this call is expected to fail with EPERM.
    if unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other(
            "could regain root after dropping privileges",
        ));
    }
    Ok((uid, gid))
}

/// An inotify instance (non-blocking, close-on-exec) watching the open directories `dirs` for
/// entries created, removed, renamed in or out, or written (a Maildir's `new/` and `cur/`).
/// Each is named as `/proc/self/fd/<fd>`, so the very directory opened (without following
/// symlinks) is watched, not whatever its path names now.
pub fn inotify_dirs(dirs: &[std::os::fd::BorrowedFd<'_>]) -> io::Result<OwnedFd> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    use std::os::fd::AsRawFd;
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    let mask = WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR;
    for d in dirs {
        inotify::add_watch(&fd, format!("/proc/self/fd/{}", d.as_raw_fd()), mask)?;
    }
    Ok(fd)
}

/// Reads every pending event of inotify fd `fd` (non-blocking); how many there were.
pub fn inotify_drain(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<usize> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = rustix::fs::inotify::Reader::new(fd, &mut buf);
    let mut n = 0;
    loop {
        match reader.next() {
            Ok(_) => n += 1,
            Err(rustix::io::Errno::AGAIN) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the open file or directory `fd` is on a network or FUSE filesystem, where inotify
/// does not see changes made by other hosts (statfs(2) `f_type`: NFS, SMB/CIFS, Ceph, AFS,
/// 9p, FUSE, GlusterFS through FUSE). Unknown (statfs fails): treated as remote.
pub fn on_network_fs(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    const REMOTE: &[i64] = &[
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x00C3_6400, // Ceph
        0x5346_414F, // AFS
        0x0102_1997, // 9p
        0x6573_5546, // FUSE
        0x0BD0_0BD0, // Lustre
    ];
    match rustix::fs::fstatfs(fd) {
        #[allow(clippy::unnecessary_cast)]
        Ok(st) => REMOTE.contains(&(st.f_type as i64)),
        Err(_) => true,
    }
}

/// Registers the owned fd `fd` (an inotify instance) with the tokio reactor for readiness.
/// Must be called within a tokio runtime.
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` owns its descriptor exclusively: it is valid and open, stays open and
    // refers to the same file description until the AsyncFd (which owns the OwnedFd) drops it,
    // and `as_raw_fd` always returns that same descriptor — what `register` requires.
    let registered = unsafe { tokio::io::unix::AsyncFd::register(fd) };
    registered.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_and_closed_fds_are_refused() {
        assert!(take_listen_fd(0).is_err());
        assert!(take_listen_fd(2).is_err());
        // Far above anything open in the test process.
        assert!(take_listen_fd(1_000_000).is_err());
    }

    #[test]
    fn non_listening_socket_is_refused() {
        use std::os::fd::AsRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let e = take_listen_fd(s.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // A regular file is not a socket either.
        let f = tempfile::tempfile().unwrap();
        assert!(take_listen_fd(f.as_raw_fd()).is_err());
    }

    #[test]
    fn adopting_a_listener_twice_is_refused() {
        use std::os::fd::IntoRawFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let fd = l.into_raw_fd();
        let adopted = take_listen_fd(fd).unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
        assert_eq!(
            take_listen_fd(fd).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn users_and_groups_are_looked_up() {
        assert_eq!(lookup_user("root").unwrap(), Some((0, 0)));
        assert_eq!(lookup_user("no-such-user-mailkit").unwrap(), None);
        assert_eq!(lookup_group("root").unwrap(), Some(0));
        assert_eq!(lookup_group("no-such-group-mailkit").unwrap(), None);
        assert!(lookup_user("a\0b").is_err());
    }
}
