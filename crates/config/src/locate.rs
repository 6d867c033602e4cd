//! Where each key of a JSON document is, so that errors found after parsing
//! (an unknown field, an environment that does not exist) can still name the
//! line and column. serde_json's `Value` forgets positions, so the text is
//! walked once more; it is known to be valid JSON by then.

use std::collections::HashMap;

/// Byte offsets of every object key, by path (`["project-x", "environments"]`).
/// A key given twice in one object has two offsets.
#[derive(Debug, Default)]
pub(crate) struct Locator {
    keys: HashMap<Vec<String>, Vec<usize>>,
    line_starts: Vec<usize>,
}

impl Locator {
    pub(crate) fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut scanner = Scanner {
            text,
            pos: 0,
            keys: HashMap::new(),
        };
        scanner.value(&mut Vec::new());
        Locator {
            keys: scanner.keys,
            line_starts,
        }
    }

    /// All offsets of the key at `path` (more than one when it is duplicated).
    pub(crate) fn offsets(&self, path: &[&str]) -> &[usize] {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.keys.get(&path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// 1-based line and column of the key at `path`, or of its nearest
    /// ancestor that is a key, or of the start of the file.
    pub(crate) fn position(&self, text: &str, path: &[&str]) -> (usize, usize) {
        for len in (0..=path.len()).rev() {
            if let Some(&off) = self.offsets(&path[..len]).first() {
                return self.line_col(text, off);
            }
        }
        (1, 1)
    }

    /// Every path whose key appears more than once in the same object.
    pub(crate) fn duplicates(&self) -> Vec<(Vec<String>, Vec<usize>)> {
        let mut d: Vec<_> = self
            .keys
            .iter()
            .filter(|(_, offs)| offs.len() > 1)
            .map(|(p, o)| (p.clone(), o.clone()))
            .collect();
        d.sort_by_key(|(_, o)| o[0]);
        d
    }

    pub(crate) fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, column)
    }
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    keys: HashMap<Vec<String>, Vec<usize>>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, path: &mut Vec<String>) {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(path),
            Some(b'[') => self.array(path),
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    fn object(&mut self, path: &mut Vec<String>) {
        self.pos += 1;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                Some(b'}') | None => {
                    self.pos += 1;
                    return;
                }
                Some(_) => {
                    self.pos += 1;
                    continue;
                }
            }
            let start = self.pos;
            let key = self.string();
            path.push(key);
            self.keys.entry(path.clone()).or_default().push(start);
            self.skip_ws();
            if self.peek() == Some(b':') {
                self.pos += 1;
            }
            self.value(path);
            path.pop();
            self.skip_ws();
            if self.peek() == Some(b',') {
                self.pos += 1;
            }
        }
    }

    fn array(&mut self, path: &mut Vec<String>) {
        self.pos += 1;
        let mut index = 0usize;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') | None => {
                    self.pos += 1;
                    return;
                }
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            path.push(index.to_string());
            self.value(path);
            path.pop();
            index += 1;
        }
    }

    /// Reads a string literal at `pos` and returns its decoded text.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        let literal = self.text.get(start..self.pos).unwrap_or("\"\"");
        serde_json::from_str(literal).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_duplicates() {
        let text =
            "{\n  \"a\": {\"x\": 1,\n    \"y\": [ {\"z\": 2} ]},\n  \"b\\u0021\": 3, \"a\": 4}";
        let l = Locator::new(text);
        assert_eq!(l.position(text, &["a", "y"]), (3, 5));
        assert_eq!(l.position(text, &["a", "x"]), (2, 9));
        assert_eq!(l.position(text, &["a", "y", "0", "z"]), (3, 13));
        assert_eq!(l.position(text, &["b!"]), (4, 3));
        assert_eq!(l.position(text, &["missing"]), (1, 1));
        let d = l.duplicates();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, vec!["a".to_string()]);
    }
}
