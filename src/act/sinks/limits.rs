//! What each receiving service accepts, and cutting text to fit it.
//!
//! A receiver that finds a field too long answers 4xx, which is final: the
//! alert is lost. So every length-limited field is cut here, on a character
//! boundary, with a visible ellipsis. What an operator needs from a headline is
//! the master name, the addresses and the outcome, so a too-long headline is
//! shortened by eliding the *middle of the master name* first (Sentinel accepts
//! names of any length); only if that is not enough is the end cut.
//!
//! Limits are in characters (Unicode scalar values), as the services count
//! them, except Teams, whose limit is on the size of the whole request body.

/// Marks text that was cut.
pub const ELLIPSIS: char = '…';

/// PagerDuty Events v2 `payload.summary` (longer is rejected with 400).
pub const PAGERDUTY_SUMMARY: usize = 1024;
/// Slack: a section block's text, a context element's text.
pub const SLACK_TEXT: usize = 3000;
/// Discord: message `content`.
pub const DISCORD_CONTENT: usize = 2000;
/// Discord: embed `title`.
pub const DISCORD_EMBED_TITLE: usize = 256;
/// Discord: embed `description`.
pub const DISCORD_EMBED_DESCRIPTION: usize = 4096;
/// Discord: embed `footer.text`.
pub const DISCORD_EMBED_FOOTER: usize = 2048;
/// Microsoft Teams (Workflows): the whole request body, in bytes (~28 KB).
pub const TEAMS_BODY_BYTES: usize = 28_000;
/// Teams: the headline (ours, so that it can never crowd out the body:
/// at most 4 bytes a character, 16 KB).
pub const TEAMS_HEADLINE: usize = 4000;

/// A master name is never elided below this many characters.
const MIN_MASTER: usize = 24;

/// `s` if it has at most `max` characters, else its first `max - 1`
/// characters and an ellipsis.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push(ELLIPSIS);
    out
}

/// `s` cut to at most `max` bytes (ellipsis included) on a character
/// boundary; `s` itself if it fits.
pub fn cut_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_owned();
    out.push(ELLIPSIS);
    out
}

/// `s` with its middle replaced by an ellipsis so it has at most `max`
/// characters (start and end kept: both tell names apart).
pub fn elide_middle(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let keep = max.saturating_sub(1);
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = s.chars().take(head).collect();
    out.push(ELLIPSIS);
    out.extend(s.chars().skip(n - tail));
    out
}

/// Renders text that quotes `master` (via `render`) within `max` characters:
/// first the master name is elided in the middle (down to [`MIN_MASTER`]
/// characters), then, if still too long, the end is cut by `cut_end`.
pub fn fit(
    master: &str,
    max: usize,
    render: impl Fn(&str) -> String,
    cut_end: impl Fn(&str, usize) -> String,
) -> String {
    let full = render(master);
    let len = full.chars().count();
    if len <= max {
        return full;
    }
    let m = master.chars().count();
    let mut text = full;
    if m > MIN_MASTER {
        // The master may appear more than once, or be escaped: shrink until
        // it fits or cannot shrink further.
        let mut want = m.saturating_sub(len - max).max(MIN_MASTER);
        loop {
            text = render(&elide_middle(master, want));
            let n = text.chars().count();
            if n <= max || want == MIN_MASTER {
                break;
            }
            want = want.saturating_sub(n - max).max(MIN_MASTER);
        }
    }
    cut_end(&text, max)
}

/// Slack `mrkdwn`/`text` escaping: `&`, `<`, `>` (the only characters Slack
/// asks to escape; `<` would otherwise start a link or a mention).
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// [`cut`] for Slack-escaped text: never leaves half an entity (`&am…`).
pub fn cut_slack(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut head: String = s.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = head.rfind('&') {
        if !head[amp..].contains(';') {
            head.truncate(amp);
        }
    }
    head.push(ELLIPSIS);
    head
}

/// Discord markdown escaping, so a name cannot turn the rest of the message
/// bold, strike it out or hide it as a spoiler.
pub fn discord_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// [`cut`] for Discord-escaped text: never ends on a lone escaping backslash.
pub fn cut_discord(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut head: String = s.chars().take(max.saturating_sub(1)).collect();
    let trailing = head.len() - head.trim_end_matches('\\').len();
    if trailing % 2 == 1 {
        head.pop();
    }
    head.push(ELLIPSIS);
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_char_boundaries_and_marks_the_cut() {
        let s = "ééééé";
        assert_eq!(cut(s, 5), s);
        assert_eq!(cut(s, 4), "ééé…");
        assert_eq!(cut(s, 4).chars().count(), 4);
        assert_eq!(cut("🦀🦀🦀", 2), "🦀…");
        assert_eq!(cut_bytes("🦀🦀🦀", 8), "🦀…");
        assert_eq!(cut_bytes("🦀🦀", 8), "🦀🦀");
    }

    #[test]
    fn elide_middle_keeps_start_and_end() {
        assert_eq!(elide_middle("abcdefghij", 5), "ab…ij");
        assert_eq!(elide_middle("abc", 5), "abc");
        assert_eq!(elide_middle("ßßßßßßßß", 4).chars().count(), 4);
    }

    #[test]
    fn fit_elides_the_master_before_cutting_the_end() {
        let master = "m".repeat(100);
        let out = fit(
            &master,
            70,
            |m| format!("{m} failed over 10.0.0.1:6379 → 10.0.0.2:6379"),
            cut,
        );
        assert_eq!(out.chars().count(), 70);
        assert!(out.ends_with("10.0.0.1:6379 → 10.0.0.2:6379"), "{out}");
        assert!(out.contains(ELLIPSIS));
    }

    #[test]
    fn slack_cut_never_splits_an_entity() {
        let s = slack_escape("a&b");
        assert_eq!(s, "a&amp;b");
        assert_eq!(cut_slack(&s, 4), "a…");
        assert_eq!(cut_slack(&s, 7), "a&amp;b");
    }

    #[test]
    fn discord_cut_never_leaves_a_lone_backslash() {
        let s = discord_escape("a*b");
        assert_eq!(s, "a\\*b");
        assert_eq!(cut_discord(&s, 3), "a…");
    }
}
