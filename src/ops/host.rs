//! This machine's host name: every alert names the watcher that sent it.

/// The host name (`gethostname(2)`, the UTS namespace's, as `hostname`
/// prints it), or `unknown-host` when it cannot be read or is not UTF-8.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole
    // call; gethostname writes at most that many and we read only up to the
    // first NUL (or the end, when the name was truncated without one).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".to_owned();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => "unknown-host".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_name_is_what_the_kernel_says() {
        let name = super::host_name();
        assert!(!name.is_empty());
        if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(name, kernel.trim());
        }
    }
}
