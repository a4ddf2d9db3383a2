//! Text mode: `replace_all`/`replace_window` against `bytes.replace`, in one call and in
//! chunks, with the streaming progress guarantee and the A -> B -> A round trip.
#![no_main]

use conda_pack_core_fuzz::{
    assemble, chunked, model_text, occurrences, prefix, Mode, ReplaceInput,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ReplaceInput| {
    let ReplaceInput {
        old,
        new,
        pieces,
        chunks,
    } = input;
    let data = assemble(&pieces, &old, &new);

    let (whole, count) = prefix::replace_all(&data, Mode::Text, &old, &new).unwrap();
    assert_eq!(whole, model_text(&data, &old, &new));
    let hits = occurrences(&data, &old);
    assert_eq!(count, hits.len());
    assert_eq!(
        chunked(&data, Mode::Text, &old, &new, &chunks).unwrap(),
        whole
    );

    // A window that is not the last one is finished up to where `old` could still begin.
    let mut out = Vec::new();
    let (done, _) = prefix::replace_window(&data, false, Mode::Text, &old, &new, &mut out).unwrap();
    assert!(done <= data.len());
    if !old.is_empty() {
        assert!(done >= data.len().saturating_sub(old.len() - 1));
    }
    assert_eq!(out, model_text(&data[..done], &old, &new));

    // Back again: exact whenever the `new`s in the result are just the ones put there.
    if !old.is_empty() && !new.is_empty() {
        let put: Vec<usize> = hits
            .iter()
            .enumerate()
            .map(|(i, &h)| h + i * new.len() - i * old.len())
            .collect();
        if occurrences(&whole, &new) == put {
            let (back, n) = prefix::replace_all(&whole, Mode::Text, &new, &old).unwrap();
            assert_eq!(n, hits.len());
            assert_eq!(back, data);
        }
    }
});
