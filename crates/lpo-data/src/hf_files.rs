//! The tokenizer files saved beside every checkpoint lpo writes
//! (`tokenizer.json`, `tokenizer_config.json`), so transformers'
//! `AutoTokenizer` loads the tokenizer the model was trained with.
//!
//! The character tokenizer becomes a `tokenizers` BPE model without merges
//! and without pre-tokenization: every character of the text is one token,
//! a character outside the alphabet is `<UNK>`, and the `Fuse` decoder
//! joins tokens back without spaces. Its special tokens (`<PAD>` 0, `<BOS>`
//! 1, `<EOS>` 2, `<UNK>` 3) are spelled in capitals, which the alphabet
//! lacks, so no text the character tokenizer encodes can contain one: the
//! two encode every such text identically. A post-processor puts `<BOS>` in
//! front, as lpo does for prompts.

use serde_json::{json, Map, Value};

/// Special tokens of the character tokenizer, by id.
pub const CHAR_SPECIALS: [&str; 4] = ["<PAD>", "<BOS>", "<EOS>", "<UNK>"];

/// `tokenizer.json` equivalent to [`crate::tokenizer::CharTokenizer`].
pub fn char_tokenizer_json() -> String {
    let mut vocab = Map::new();
    for (id, token) in CHAR_SPECIALS.iter().enumerate() {
        vocab.insert((*token).into(), id.into());
    }
    for (i, c) in lpo_tasks::ALPHABET.chars().enumerate() {
        vocab.insert(c.to_string(), (CHAR_SPECIALS.len() + i).into());
    }
    let added: Vec<Value> = CHAR_SPECIALS
        .iter()
        .enumerate()
        .map(|(id, token)| {
            json!({"id": id, "content": token, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let value = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<BOS>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<BOS>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<BOS>": {"id": "<BOS>", "ids": [1], "tokens": ["<BOS>"]}}
        },
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<UNK>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    });
    serde_json::to_string_pretty(&value).expect("JSON values serialize") + "\n"
}

/// A `tokenizer_config.json` naming the special tokens, for a tokenizer
/// that came without one.
pub fn tokenizer_config(bos: &str, eos: &str, pad: &str, unk: Option<&str>) -> String {
    let mut value = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": pad,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(unk) = unk {
        value["unk_token"] = unk.into();
    }
    serde_json::to_string_pretty(&value).expect("JSON values serialize") + "\n"
}

/// The two files of the character tokenizer.
pub fn char_tokenizer_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("tokenizer.json".into(), char_tokenizer_json().into_bytes()),
        (
            "tokenizer_config.json".into(),
            tokenizer_config(
                CHAR_SPECIALS[1],
                CHAR_SPECIALS[2],
                CHAR_SPECIALS[0],
                Some(CHAR_SPECIALS[3]),
            )
            .into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{CharTokenizer, Tokenize};

    #[test]
    fn the_char_tokenizer_json_encodes_and_decodes_like_char_tokenizer() {
        let hf = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
        let ours = CharTokenizer;
        assert_eq!(hf.get_vocab_size(true), ours.vocab_size());
        let texts = [
            lpo_tasks::ALPHABET.to_string(),
            "47+385=432 1>5,2>7: d*3+ [1-] abc<".into(),
            "</s><s> <pad> (x|y)?!".into(), // conventional special names are plain text here
            "  two  spaces ".into(),
            String::new(),
        ];
        for text in &texts {
            let want: Vec<u32> = ours.encode(text).iter().map(|&i| i as u32).collect();
            let plain = hf.encode(text.as_str(), false).unwrap();
            assert_eq!(plain.get_ids(), want.as_slice(), "{text:?}");
            // With special tokens: <BOS> in front, as lpo's prompts.
            let with = hf.encode(text.as_str(), true).unwrap();
            assert_eq!(with.get_ids()[0], ours.bos() as u32);
            assert_eq!(&with.get_ids()[1..], want.as_slice());
            let mut ids = vec![ours.bos() as u32];
            ids.extend(&want);
            ids.extend([ours.eos() as u32, ours.pad() as u32]);
            assert_eq!(&hf.decode(&ids, true).unwrap(), text, "{text:?}");
        }
        // A character outside the alphabet is <UNK> in both.
        assert_eq!(hf.encode("aÄ", false).unwrap().get_ids(), [14, 3]);
        assert_eq!(ours.encode("aÄ"), [14, 3]);
        for (id, token) in CHAR_SPECIALS.iter().enumerate() {
            assert_eq!(hf.token_to_id(token), Some(id as u32));
        }
        assert_eq!(
            (ours.pad(), ours.bos(), ours.eos()),
            (0, 1, 2),
            "CHAR_SPECIALS follows CharTokenizer's ids"
        );
    }
}
