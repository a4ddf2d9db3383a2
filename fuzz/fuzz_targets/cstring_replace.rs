//! Binary mode: NUL-padded C-string replacement against a byte-by-byte model, in one call,
//! in chunks and in place; the file length never changes; shrinking never fails; A -> B -> A
//! restores the input.
#![no_main]

use conda_pack_core_fuzz::{
    assemble, chunked, model_cstrings, occurrences, prefix, Mode, ReplaceInput,
};
use libfuzzer_sys::fuzz_target;

/// Where the `new`s land: C strings keep their place, and inside one every earlier
/// replacement moved the later ones by the length difference.
fn placed(data: &[u8], old: &[u8], new: &[u8]) -> Vec<usize> {
    let mut put = Vec::new();
    let mut in_string = 0;
    let mut last_end = 0;
    for h in occurrences(data, old) {
        if data[last_end..h].contains(&0) {
            in_string = 0;
        }
        put.push(h + in_string * new.len() - in_string * old.len());
        in_string += 1;
        last_end = h + old.len();
    }
    put
}

fuzz_target!(|input: ReplaceInput| {
    let ReplaceInput {
        old,
        new,
        pieces,
        chunks,
    } = input;
    let data = assemble(&pieces, &old, &new);

    let whole = prefix::replace_all(&data, Mode::Binary, &old, &new);
    let model = model_cstrings(&data, &old, &new);
    match (&whole, &model) {
        (Ok((got, _)), Some(want)) => assert_eq!(got, want),
        (Err(_), None) => {}
        _ => panic!("engine {whole:?} but model {model:?}"),
    }
    if new.len() <= old.len() {
        assert!(whole.is_ok(), "a shrink failed: {whole:?}");
    }
    let streamed = chunked(&data, Mode::Binary, &old, &new, &chunks);
    match (&whole, &streamed) {
        (Ok((got, _)), Ok(s)) => assert_eq!(s, got),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but streamed {streamed:?}"),
    }
    // In place: the same bytes and count; on failure, or after undo, the input unchanged.
    let mut buf = data.clone();
    let mut undo = prefix::Undo::new();
    let in_place = prefix::replace_cstrings_in_place(&mut buf, &old, &new, &mut undo);
    match (&whole, &in_place) {
        (Ok((got, n)), Ok(m)) => {
            assert_eq!(&buf, got);
            assert_eq!(n, m);
            prefix::undo_in_place(&mut buf, &mut undo, 0);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but in place {in_place:?}"),
    }
    assert_eq!(buf, data);
    let Ok((out, count)) = whole else { return };
    assert_eq!(out.len(), data.len());

    // Back again, for real prefixes (no NUL) and strings that end in a NUL.
    if old.is_empty() || new.is_empty() || old.contains(&0) || new.contains(&0) {
        return;
    }
    assert_eq!(count, occurrences(&data, &old).len());
    if new.len() < old.len() && data.last() != Some(&0) {
        return; // a shrunk string at EOF has no terminator to grow back over
    }
    if occurrences(&out, &new) == placed(&data, &old, &new) {
        let back = prefix::replace_all(&out, Mode::Binary, &new, &old);
        assert_eq!(back.map(|(b, _)| b).as_deref(), Ok(&data[..]));
    }
});
