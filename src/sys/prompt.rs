//! Questions to the person running setup, through `inquire` on a terminal. With `--yes` every
//! question takes its documented default without asking; without a terminal and without `--yes`
//! a question is an error that names the flag to pass, never a silent guess.

use std::io::IsTerminal;

use thiserror::Error;

/// Why a question got no answer.
#[derive(Debug, Error)]
pub enum PromptError {
    /// No terminal to ask on and no `--yes`.
    #[error("{question}: no terminal to ask on; pass --yes to take the defaults (or the option that answers it)")]
    NoTerminal {
        /// The question.
        question: String,
    },
    /// The user pressed Esc or Ctrl-C at the question.
    #[error("{question}: cancelled")]
    Cancelled {
        /// The question.
        question: String,
    },
    /// The terminal prompt failed.
    #[error("{question}: {message}")]
    Failed {
        /// The question.
        question: String,
        /// The error, as text.
        message: String,
    },
}

/// Something that can answer setup's questions.
pub trait Prompter {
    /// Yes or no.
    fn confirm(&mut self, question: &str, default: bool) -> Result<bool, PromptError>;
    /// One of `options` (index); `default` is preselected.
    fn select(
        &mut self,
        question: &str,
        options: &[String],
        default: usize,
    ) -> Result<usize, PromptError>;
}

/// How questions are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompts {
    /// `--yes`: every question takes its default.
    Defaults,
    /// Ask with inquire.
    Terminal,
    /// No terminal and no `--yes`: refuse to guess.
    NoTerminal,
}

impl Prompts {
    /// `Defaults` when `yes`, else `Terminal` when stdin and stderr are terminals, else
    /// `NoTerminal`.
    pub fn new(yes: bool) -> Prompts {
        if yes {
            Prompts::Defaults
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Prompts::Terminal
        } else {
            Prompts::NoTerminal
        }
    }
}

fn inquire_err(question: &str, e: inquire::InquireError) -> PromptError {
    match e {
        inquire::InquireError::OperationCanceled | inquire::InquireError::OperationInterrupted => {
            PromptError::Cancelled {
                question: question.to_string(),
            }
        }
        other => PromptError::Failed {
            question: question.to_string(),
            message: other.to_string(),
        },
    }
}

impl Prompter for Prompts {
    fn confirm(&mut self, question: &str, default: bool) -> Result<bool, PromptError> {
        match self {
            Prompts::Defaults => Ok(default),
            Prompts::NoTerminal => Err(PromptError::NoTerminal {
                question: question.to_string(),
            }),
            Prompts::Terminal => inquire::Confirm::new(question)
                .with_default(default)
                .prompt()
                .map_err(|e| inquire_err(question, e)),
        }
    }

    fn select(
        &mut self,
        question: &str,
        options: &[String],
        default: usize,
    ) -> Result<usize, PromptError> {
        match self {
            Prompts::Defaults => Ok(default.min(options.len().saturating_sub(1))),
            Prompts::NoTerminal => Err(PromptError::NoTerminal {
                question: question.to_string(),
            }),
            Prompts::Terminal => {
                let choice = inquire::Select::new(question, options.to_vec())
                    .with_starting_cursor(default)
                    .raw_prompt()
                    .map_err(|e| inquire_err(question, e))?;
                Ok(choice.index)
            }
        }
    }
}

/// Answers from a list, in order (tests of the interactive paths).
#[derive(Debug, Default)]
pub struct Scripted {
    /// Answers to give, in order: an option index for `select`, 1 (yes) or other (no) for
    /// `confirm`; the default once empty.
    pub answers: std::collections::VecDeque<usize>,
    /// The questions asked, in order.
    pub asked: Vec<String>,
}

impl Prompter for Scripted {
    fn confirm(&mut self, question: &str, default: bool) -> Result<bool, PromptError> {
        self.asked.push(question.to_string());
        Ok(self.answers.pop_front().map_or(default, |a| a == 1))
    }
    fn select(
        &mut self,
        question: &str,
        options: &[String],
        default: usize,
    ) -> Result<usize, PromptError> {
        self.asked.push(question.to_string());
        Ok(self
            .answers
            .pop_front()
            .unwrap_or(default)
            .min(options.len().saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_no_terminal() {
        let opts = vec!["a".to_string(), "b".to_string()];
        assert_eq!(Prompts::Defaults.select("q", &opts, 1).unwrap(), 1);
        assert!(Prompts::Defaults.confirm("q", true).unwrap());
        let e = Prompts::NoTerminal
            .confirm("Apply the plan?", true)
            .unwrap_err();
        assert!(e.to_string().contains("--yes"), "{e}");
    }
}
