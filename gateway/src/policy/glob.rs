//! Route globs: `*` matches any run of characters (including none); every other character
//! matches itself. Matching and overlap are both decided exactly, without regexes.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy with backtracking to the last star: linear for practical patterns.
    let (mut p, mut t) = (0usize, 0usize);
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            last_star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = last_star {
            p = star + 1;
            t = matched + 1;
            last_star = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether some string matches both patterns (so two routes could classify the same call).
pub fn overlap(left: &str, right: &str) -> bool {
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    let mut memo = vec![None; (left.len() + 1) * (right.len() + 1)];
    overlap_from(&left, &right, 0, 0, &mut memo)
}

fn overlap_from(
    left: &[char],
    right: &[char],
    i: usize,
    j: usize,
    memo: &mut Vec<Option<bool>>,
) -> bool {
    let slot = i * (right.len() + 1) + j;
    if let Some(known) = memo[slot] {
        return known;
    }
    let result = match (left.get(i), right.get(j)) {
        (None, None) => true,
        // A star matches the empty string, or eats one character of the other side.
        (Some('*'), _) if overlap_from(left, right, i + 1, j, memo) => true,
        (_, Some('*')) if overlap_from(left, right, i, j + 1, memo) => true,
        (Some('*'), Some(_)) => overlap_from(left, right, i, j + 1, memo),
        (Some(_), Some('*')) => overlap_from(left, right, i + 1, j, memo),
        (Some(a), Some(b)) => a == b && overlap_from(left, right, i + 1, j + 1, memo),
        _ => false,
    };
    memo[slot] = Some(result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        assert!(matches("search", "search"));
        assert!(!matches("search", "search2"));
        assert!(matches("search*", "search_web"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("*.example.com", "api.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("/v1/*", "/v1/query"));
    }

    #[test]
    fn overlapping() {
        assert!(overlap("search*", "*web"));
        assert!(overlap("*", "anything"));
        assert!(!overlap("read_*", "write_*"));
        assert!(!overlap("a*b", "a*c"));
        assert!(overlap("a*", "*b"));
        assert!(!overlap("abc", "abd"));
        assert!(overlap("git_*", "git_push"));
        assert!(!overlap("/v1/*", "/v2/*"));
    }
}
