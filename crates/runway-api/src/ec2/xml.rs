//! Writing EC2's XML answers: elements in camelCase, lists as `<name><item>...</item></name>`.

use std::fmt::Write;

/// An XML document being written.
#[derive(Debug, Default)]
pub(crate) struct Xml(String);

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

impl Xml {
    pub fn open(&mut self, name: &str) {
        let _ = write!(self.0, "<{name}>");
    }

    /// Opens the root element with its namespace.
    pub fn open_ns(&mut self, name: &str, ns: &str) {
        self.0
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(self.0, "<{name} xmlns=\"{ns}\">");
    }

    pub fn close(&mut self, name: &str) {
        let _ = write!(self.0, "</{name}>");
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: impl std::fmt::Display) {
        self.open(name);
        let text = text.to_string();
        escape(&mut self.0, &text);
        self.close(name);
    }

    /// `<name>` with an `<item>` per element, written by `item`.
    pub fn list<T>(&mut self, name: &str, items: &[T], mut item: impl FnMut(&mut Xml, &T)) {
        self.open(name);
        for i in items {
            self.open("item");
            item(self, i);
            self.close("item");
        }
        self.close(name);
    }

    /// `<name>` with `<item>text</item>` per string.
    pub fn strings(&mut self, name: &str, items: &[String]) {
        self.list(name, items, |x, s| escape(&mut x.0, s));
    }

    pub fn finish(self) -> String {
        self.0
    }
}
