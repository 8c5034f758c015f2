//! Input: what the browser asks for (`beforeinput` input types as [`Input`] and [`Edit`],
//! keyboard [`shortcut`]s).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Backward,
    Forward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Char,
    Word,
    /// To the start or end of the line.
    Line,
}

/// An edit of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the selection by text (which may hold line breaks).
    InsertText(String),
    /// Split the line at the caret (Enter).
    InsertParagraph,
    /// Delete the selection, or from the caret by `unit` in `direction`.
    Delete {
        direction: Direction,
        unit: Unit,
    },
    /// Delete the selection (cut, drag); nothing at a caret.
    DeleteSelection,
    /// Delete the selection, or the content of the caret's line.
    DeleteLine,
    ToggleBold,
    ToggleItalic,
    /// Make the selected lines headings of this level, or plain paragraphs.
    SetHeading(Option<u8>),
}

/// What a `beforeinput` event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Edit(Edit),
    Undo,
    Redo,
    /// Part of an IME composition: the browser edits, the editor applies the result.
    Composition,
    /// Something this editor does not do (lists, links, underline…): cancelled.
    Ignored,
}

/// Which range an input applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetUse {
    /// The event's target range (a spelling correction, a drop point).
    Always,
    /// The target range when it is not empty (the browser knows grapheme clusters, word
    /// boundaries and visual lines), else the editor's own rule.
    IfNotEmpty,
    /// The selection.
    Never,
}

/// Line breaks as the document stores them: `"\r\n"` and `"\r"` become `"\n"`.
pub fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

impl Input {
    /// Reads an `InputEvent`'s `inputType` and its text (`data`, or the plain text of its
    /// `dataTransfer`).
    pub fn classify(input_type: &str, text: Option<String>) -> Input {
        let delete = |direction, unit| Input::Edit(Edit::Delete { direction, unit });
        use Direction::{Backward, Forward};
        match input_type {
            "insertText"
            | "insertReplacementText"
            | "insertFromPaste"
            | "insertFromPasteAsQuotation"
            | "insertFromDrop"
            | "insertFromYank" => Input::Edit(Edit::InsertText(normalize_newlines(
                &text.unwrap_or_default(),
            ))),
            "insertParagraph" | "insertLineBreak" => Input::Edit(Edit::InsertParagraph),
            "insertCompositionText" | "deleteCompositionText" | "insertFromComposition" => {
                Input::Composition
            }
            "deleteContentBackward" => delete(Backward, Unit::Char),
            "deleteContentForward" => delete(Forward, Unit::Char),
            "deleteWordBackward" => delete(Backward, Unit::Word),
            "deleteWordForward" => delete(Forward, Unit::Word),
            "deleteSoftLineBackward" | "deleteHardLineBackward" => delete(Backward, Unit::Line),
            "deleteSoftLineForward" | "deleteHardLineForward" => delete(Forward, Unit::Line),
            "deleteEntireSoftLine" => Input::Edit(Edit::DeleteLine),
            "deleteByCut" | "deleteByDrag" | "deleteContent" => Input::Edit(Edit::DeleteSelection),
            "historyUndo" => Input::Undo,
            "historyRedo" => Input::Redo,
            "formatBold" => Input::Edit(Edit::ToggleBold),
            "formatItalic" => Input::Edit(Edit::ToggleItalic),
            _ => Input::Ignored,
        }
    }
}

/// Which range an input type applies to (see [`TargetUse`]).
pub fn target_use(input_type: &str) -> TargetUse {
    match input_type {
        "insertReplacementText" | "insertFromDrop" | "deleteByDrag" => TargetUse::Always,
        t if t.starts_with("delete") && t != "deleteByCut" && t != "deleteContent" => {
            TargetUse::IfNotEmpty
        }
        _ => TargetUse::Never,
    }
}

/// What a toolbar button or a keyboard shortcut does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Bold,
    Italic,
    /// `None`: a plain paragraph.
    Heading(Option<u8>),
    Undo,
    Redo,
}

/// The command of a key press, with Google Docs' shortcuts: Ctrl/Cmd+B, +I, +Z,
/// +Shift+Z or +Y, and Ctrl/Cmd+Alt+0..3 for the paragraph style. Letters are read from
/// `key` (the layout's letter, so AZERTY's Ctrl+Z is undo) and digits from `code` (the
/// physical key, since Alt changes what a digit types); AltGr, which types characters
/// on many layouts, is never a shortcut.
pub fn shortcut(
    key: &str,
    code: &str,
    primary: bool,
    shift: bool,
    alt: bool,
    alt_graph: bool,
) -> Option<Command> {
    if !primary || alt_graph {
        return None;
    }
    if alt {
        return match (code, shift) {
            ("Digit0" | "Numpad0", false) => Some(Command::Heading(None)),
            ("Digit1" | "Numpad1", false) => Some(Command::Heading(Some(1))),
            ("Digit2" | "Numpad2", false) => Some(Command::Heading(Some(2))),
            ("Digit3" | "Numpad3", false) => Some(Command::Heading(Some(3))),
            _ => None,
        };
    }
    match (key.to_lowercase().as_str(), shift) {
        ("b", false) => Some(Command::Bold),
        ("i", false) => Some(Command::Italic),
        ("z", false) => Some(Command::Undo),
        ("z", true) | ("y", false) => Some(Command::Redo),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_types_map_to_edits() {
        use Direction::*;
        let cases = [
            ("insertText", Input::Edit(Edit::InsertText("x".into()))),
            ("insertFromPaste", Input::Edit(Edit::InsertText("x".into()))),
            ("insertParagraph", Input::Edit(Edit::InsertParagraph)),
            ("insertLineBreak", Input::Edit(Edit::InsertParagraph)),
            (
                "deleteContentBackward",
                Input::Edit(Edit::Delete {
                    direction: Backward,
                    unit: Unit::Char,
                }),
            ),
            (
                "deleteWordForward",
                Input::Edit(Edit::Delete {
                    direction: Forward,
                    unit: Unit::Word,
                }),
            ),
            (
                "deleteSoftLineBackward",
                Input::Edit(Edit::Delete {
                    direction: Backward,
                    unit: Unit::Line,
                }),
            ),
            (
                "deleteHardLineForward",
                Input::Edit(Edit::Delete {
                    direction: Forward,
                    unit: Unit::Line,
                }),
            ),
            ("deleteEntireSoftLine", Input::Edit(Edit::DeleteLine)),
            ("deleteByCut", Input::Edit(Edit::DeleteSelection)),
            ("historyUndo", Input::Undo),
            ("historyRedo", Input::Redo),
            ("formatBold", Input::Edit(Edit::ToggleBold)),
            ("formatItalic", Input::Edit(Edit::ToggleItalic)),
            ("insertCompositionText", Input::Composition),
            ("formatUnderline", Input::Ignored),
            ("insertOrderedList", Input::Ignored),
        ];
        for (input_type, want) in cases {
            assert_eq!(
                Input::classify(input_type, Some("x".into())),
                want,
                "{input_type}"
            );
        }
        assert_eq!(
            Input::classify("insertFromPaste", Some("a\r\nb\rc".into())),
            Input::Edit(Edit::InsertText("a\nb\nc".into()))
        );
        assert_eq!(target_use("insertReplacementText"), TargetUse::Always);
        assert_eq!(target_use("deleteWordBackward"), TargetUse::IfNotEmpty);
        assert_eq!(target_use("deleteByCut"), TargetUse::Never);
        assert_eq!(target_use("insertText"), TargetUse::Never);
    }

    #[test]
    fn shortcuts() {
        let key = |key: &str, code: &str, shift, alt| shortcut(key, code, true, shift, alt, false);
        assert_eq!(key("b", "KeyB", false, false), Some(Command::Bold));
        assert_eq!(key("I", "KeyI", false, false), Some(Command::Italic));
        assert_eq!(
            key("z", "KeyW", false, false),
            Some(Command::Undo),
            "AZERTY"
        );
        assert_eq!(key("Z", "KeyZ", true, false), Some(Command::Redo));
        assert_eq!(key("y", "KeyY", false, false), Some(Command::Redo));
        assert_eq!(
            key("¡", "Digit1", false, true),
            Some(Command::Heading(Some(1)))
        );
        assert_eq!(
            key("º", "Digit0", false, true),
            Some(Command::Heading(None))
        );
        assert_eq!(key("x", "KeyX", false, false), None);
        assert_eq!(key("b", "KeyB", true, false), None);
        assert_eq!(shortcut("b", "KeyB", false, false, false, false), None);
        assert_eq!(
            shortcut("}", "Digit0", true, false, true, true),
            None,
            "AltGr types"
        );
    }
}
