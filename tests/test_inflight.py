"""The mark a file being sent leaves in its inbox, on real files and real journals (SQLite and
PostgreSQL): a journal that does not know it was sending that file holds the inbox back."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conftest import one_sent_one_not

from filedrop import inflight as inflight_module
from filedrop.errors import FiledropError
from filedrop.inflight import (
    SENDING_FOLDER,
    MarkFolderError,
    MarkHeldError,
    Sending,
    clear_mark,
    mark_path,
    unknown_mark,
)
from filedrop.journal import Journal, this_owner
from filedrop.journal.engines import PostgresLocation
from filedrop.outcome import written_stamp
from filedrop.pipeline import GONE_NOT_SENT, close_gone_file, rewrite_outcome
from filedrop.read import ReadLimits
from filedrop.runner import RunReport
from filedrop.states import ExitCode, FileState

TARGET = "production:3fa85f64-5717-4562-b3fc-2c963f66afa6"
SHA = "ab" * 32


def claimed_and_marked(
    journal: Journal, source: Path, *, target: str = TARGET, batches: int = 1
) -> Path:
    """What a run does before its first ``batches`` POSTs: claim the file, then each batch,
    noting it in the file's mark (written at the first)."""
    record = journal.claim_file(
        path=source, sha256=SHA, target=target, owner=this_owner(), stale_s=60
    )
    assert record is not None
    sending = Sending(source, SHA, journal=journal.identity(), target=target, now=time.time())
    for n in range(batches):
        batch, _ = journal.claim_batch(
            file_id=record.id, target=target, invoice_numbers=[f"{source.stem}-{n}"]
        )
        sending.before_post(batch)
    assert sending.path == mark_path(source, SHA, target)
    return sending.path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return inbox / "april.csv"


def test_the_journal_that_claimed_the_file_knows_its_mark(
    journal_location: Path | PostgresLocation, source: Path
) -> None:
    with Journal(journal_location) as journal:
        mark = claimed_and_marked(journal, source)
        assert mark.parent == source.parent / SENDING_FOLDER
        assert unknown_mark(source.parent, journal, target=TARGET) is None
    with Journal(journal_location) as again:  # the id is the journal's, not the connection's
        assert unknown_mark(source.parent, again, target=TARGET) is None


def test_another_journal_is_held_back_by_the_mark_and_told_what_to_do(
    journal_location: Path | PostgresLocation, source: Path, tmp_path: Path
) -> None:
    with Journal(journal_location) as journal:
        mark = claimed_and_marked(journal, source)
        wrote = journal.identity()
    with Journal(tmp_path / "new.db") as fresh:
        found = unknown_mark(source.parent, fresh, target=TARGET)
        assert found is not None
        assert (found.file, found.sha256, found.target) == ("april.csv", SHA, TARGET)
        assert found.path == mark
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(found.started_at))
        assert found.sentence(fresh.path) == (
            f"april.csv: the journal {fresh.path} does not know all that was sent from it "
            f"(filedrop began sending it at {when} with another journal, or with this one "
            "before it was put back from an older copy) and no outcome of it was written; "
            "nothing in this inbox is sent until FILEDROP_STATE points at the journal in use "
            "then, or, if that is lost for good, Amili has said which of the file's invoices "
            f"arrived, those are taken out of it, and {mark} is deleted"
        )
        assert found.summary() == (
            "not sent: the journal does not know all that was sent from april.csv (see the "
            "log); point FILEDROP_STATE at the journal in use then"
        )
        # Another journal's outcome of the file leaves the mark: it is not that journal's.
        clear_mark(source, SHA, TARGET, journal=fresh.identity())
        assert mark.exists()
        clear_mark(source, SHA, TARGET, journal=wrote)  # as its own journal's outcome does
        assert not (source.parent / ".filedrop").exists()  # nor the folders it was in
        assert unknown_mark(source.parent, fresh, target=TARGET) is None


def test_a_rebuild_that_leaves_the_inbox_held_back_by_a_mark_says_so(
    source: Path, tmp_path: Path
) -> None:
    """The journal lost while a file was being sent, before its outcome: a rebuild, which
    reads outcomes, finds none, and said it was done (exit 0), while the mark went on holding
    the inbox back at the next run (found by a hostile review of operator flows). It says the
    mark's sentence, exit 1."""
    from builders import filedrop

    with Journal(tmp_path / "lost.db") as lost:
        mark = claimed_and_marked(lost, source)
    env = {
        "FILEDROP_ENV": "production",
        "FILEDROP_ORG_ID": TARGET.partition(":")[2],
        "FILEDROP_INBOX": str(source.parent),
        "FILEDROP_STATE": str(tmp_path / "new.db"),
    }
    _, out, _ = filedrop("journal", "rebuild", environ=env, expect=1)
    last = out.splitlines()[-1]
    assert last.startswith(f"Still: april.csv: the journal {tmp_path / 'new.db'} does not know")
    assert last.endswith(f"and {mark} is deleted.")


def test_an_older_copy_of_the_journal_does_not_know_a_mark_made_after_it(
    source: Path, tmp_path: Path
) -> None:
    """Same journal id, but the copy was taken before the file was claimed."""
    live, copy = tmp_path / "journal.db", tmp_path / "copy.db"
    with Journal(live) as journal:
        journal.identity()
        with sqlite3.connect(live) as db, sqlite3.connect(copy) as backup:
            db.backup(backup)
        claimed_and_marked(journal, source)
    with Journal(copy) as older:
        assert older.identity() == Journal(live).identity()
        found = unknown_mark(source.parent, older, target=TARGET)
        assert found is not None and found.file == "april.csv"


def test_a_copy_taken_while_the_file_was_sent_does_not_know_the_batches_after_it(
    source: Path, tmp_path: Path
) -> None:
    """The copy knows the file and its first batch, the mark names three: held back. The
    journal the copy was taken of knows all three: not."""
    live, copy = tmp_path / "journal.db", tmp_path / "copy.db"
    with Journal(live) as journal:
        claimed_and_marked(journal, source, batches=1)
        with sqlite3.connect(live) as db, sqlite3.connect(copy) as backup:
            db.backup(backup)
        record = journal.find_file(target=TARGET, name=source.name, sha256=SHA)
        assert record is not None
        sending = Sending(
            source, SHA, journal=journal.identity(), target=TARGET, now=time.time()
        )  # the mark this journal wrote is kept, with its batch
        for n in (1, 2):
            batch, _ = journal.claim_batch(
                file_id=record.id, target=TARGET, invoice_numbers=[f"later-{n}"]
            )
            sending.before_post(batch)
        assert unknown_mark(source.parent, journal, target=TARGET) is None
    with Journal(copy) as older:
        found = unknown_mark(source.parent, older, target=TARGET)
        assert found is not None and found.batches == {1, 2, 3}


def test_a_last_batch_line_cut_short_was_never_posted(source: Path, tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.db") as journal:
        mark = claimed_and_marked(journal, source, batches=1)
        with mark.open("ab") as handle:
            handle.write(b"2")  # killed while writing the line of batch 2: it never went
        assert unknown_mark(source.parent, journal, target=TARGET) is None


def test_a_mark_is_made_while_another_file_of_the_inbox_clears_its_own(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another file's outcome, written as this file makes its mark, takes the marks' folders
    away when they are empty: twice in a row (50 files dropped at once into a watched inbox),
    the mark could not be made, and the file was RETRY with an ERROR line for nothing. The
    folders are now made, and the mark in them, while no mark of this process is cleared."""
    other = source.with_name("mai.csv")
    make_folders = inflight_module._make_folders

    def cleared_meanwhile(inbox: Path) -> list[Path]:
        made = make_folders(inbox)
        clearing = threading.Thread(
            target=clear_mark, args=(other, SHA, TARGET), kwargs={"journal": "journal"}
        )
        clearing.start()
        clearing.join(timeout=0.5)  # waits in vain while the folders are held
        return made

    monkeypatch.setattr(inflight_module, "_make_folders", cleared_meanwhile)
    sending = Sending(source, SHA, journal="journal", target=TARGET, now=time.time())
    sending.before_post(1)
    assert sending.path.read_bytes().endswith(b"\n1\n")


def test_the_marks_folder_a_link_or_a_file_is_refused_and_never_followed(
    source: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    own = source.parent / ".filedrop"
    with Journal(tmp_path / "journal.db") as journal:
        for made, what in ((lambda: own.symlink_to(elsewhere), "a symbolic link"),
                           (lambda: own.write_text("x"), "a file")):  # fmt: skip
            made()
            with pytest.raises(MarkFolderError) as refused:
                claimed_and_marked(journal, source)
            assert str(refused.value) == (
                f"{own} is {what}, not a folder filedrop may use: it keeps its marks of the "
                "files it is sending there; move it away. Nothing was sent."
            )
            assert unknown_mark(source.parent, journal, target=TARGET) is None
            own.unlink()
        assert list(elsewhere.iterdir()) == []


def test_a_marks_folder_that_cannot_be_listed_holds_the_inbox_back(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permissions are no obstacle to root, who runs the tests: the listing is made to fail."""
    (source.parent / SENDING_FOLDER).mkdir(parents=True)

    def refused(self: Path) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refused)
    with Journal(tmp_path / "journal.db") as journal:
        found = unknown_mark(source.parent, journal, target=TARGET)
        assert found is not None and found.path == source.parent / SENDING_FOLDER
        assert found.file is None


def test_each_held_file_is_told_of_its_own_mark_first(source: Path, tmp_path: Path) -> None:
    """Two files killed while sent, the journal lost: each one's summary names its own mark
    (both named the first mark found, so settling that one left the other a surprise)."""
    with Journal(tmp_path / "old.db") as old:
        claimed_and_marked(old, source.with_name("a.csv"))
        claimed_and_marked(old, source.with_name("b.csv"))
    with Journal(tmp_path / "new.db") as fresh:
        for name in ("a.csv", "b.csv"):
            found = unknown_mark(source.parent, fresh, target=TARGET, of=name)
            assert found is not None and found.file == name
        found = unknown_mark(source.parent, fresh, target=TARGET, of="c.csv")
        assert found is not None and found.file in ("a.csv", "b.csv")


def test_marks_of_another_target_or_from_before_a_fresh_start_do_not_count(
    source: Path, tmp_path: Path
) -> None:
    with Journal(tmp_path / "old.db") as old:
        claimed_and_marked(old, source, target="sandbox:trial")
        claimed_and_marked(old, source.with_name("may.csv"))
    with Journal(tmp_path / "new.db") as fresh:
        found = unknown_mark(source.parent, fresh, target=TARGET)
        assert found is not None and found.file == "may.csv"  # the trial's mark is passed over
        time.sleep(0.01)
        fresh.mark_started_fresh()  # 'journal rebuild --fresh': everything goes again, on purpose
        assert unknown_mark(source.parent, fresh, target=TARGET) is None


def _garbage(mark: Path) -> None:
    mark.write_text('{"file": "april.csv"')


def _a_number_for_a_name(mark: Path) -> None:
    mark.write_text('{"file": 7, "sha256": "x", "journal": "j", "target": "t", "started_at": 0}')


def _a_link(mark: Path) -> None:
    target = mark.with_name("elsewhere")
    target.write_text("{}")
    mark.symlink_to(target)


def _a_pipe(mark: Path) -> None:
    os.mkfifo(mark)  # opened for reading, a pipe would block the run for good


def _a_time_past_any_calendar(mark: Path) -> None:
    facts = {"file": "a.csv", "sha256": "x", "journal": "j", "target": TARGET}
    mark.write_text(json.dumps({**facts, "started_at": 1e300}) + "\n1\n")


def _a_time_that_is_no_number(mark: Path) -> None:
    facts = {"file": "a.csv", "sha256": "x", "journal": "j", "target": TARGET}
    mark.write_text(json.dumps({**facts, "started_at": float("nan")}) + "\n1\n")


def _a_batch_that_is_no_number(mark: Path) -> None:
    facts = {"file": "a.csv", "sha256": "x", "journal": "j", "target": TARGET}
    mark.write_text(json.dumps({**facts, "started_at": 0}) + "\n1\ntwo\n")


@pytest.mark.parametrize(
    "made",
    [
        _garbage,
        _a_number_for_a_name,
        _a_link,
        _a_pipe,
        _a_time_past_any_calendar,
        _a_time_that_is_no_number,
        _a_batch_that_is_no_number,
    ],
)
def test_a_mark_that_cannot_be_read_holds_the_inbox_back(
    made: object, source: Path, tmp_path: Path
) -> None:
    folder = source.parent / SENDING_FOLDER
    folder.mkdir(parents=True)
    mark = folder / "0123.json"
    made(mark)  # type: ignore[operator]
    with Journal(tmp_path / "journal.db") as journal:
        found = unknown_mark(source.parent, journal, target=TARGET)
        assert found is not None and found.file is None
        assert found.sentence(journal.path) == (
            f"{mark}, filedrop's mark of a file it was sending, cannot be read, so whether the "
            f"journal {journal.path} knows all that was sent cannot be told; nothing in this "
            "inbox is sent until it is looked at and deleted"
        )
        assert found.summary() == f"not sent: filedrop's mark {mark} cannot be read (see the log)"


def test_a_mark_caught_between_being_made_and_being_written_is_read_once_written(
    source: Path, tmp_path: Path
) -> None:
    """A mark is made empty, then written: another file of the inbox looking at the marks in
    between found it "cannot be read", and the whole inbox was held back (a run exited 2, in a
    burst of files). Such a mark is read again, a moment later, before it counts as that."""
    with Journal(tmp_path / "journal.db") as journal:
        written = claimed_and_marked(journal, source)
        text = written.read_bytes()
        written.write_bytes(b"")  # as the writer left it for a moment

        def write_it() -> None:
            time.sleep(0.08)
            written.write_bytes(text)

        writer = threading.Thread(target=write_it)
        writer.start()
        try:
            assert unknown_mark(source.parent, journal, target=TARGET) is None
        finally:
            writer.join()


def test_no_mark_is_written_until_a_batch_is_about_to_go_and_one_naming_none_tells_nothing_went(
    source: Path, tmp_path: Path
) -> None:
    """A run that only polls (every row sent before) writes no mark. A mark naming no batch
    (a filedrop before this one, killed between the mark's first line and its first batch's)
    tells that nothing went: it holds nothing back, and another journal's run writes over it."""
    with Journal(tmp_path / "old.db") as old:
        sending = Sending(source, SHA, journal=old.identity(), target=TARGET, now=1.0)
        assert not (source.parent / ".filedrop").exists()
        sending.path.parent.mkdir(parents=True)
        sending.path.write_bytes(sending._head)
    with Journal(tmp_path / "new.db") as fresh:
        assert unknown_mark(source.parent, fresh, target=TARGET) is None
        Sending(source, SHA, journal=fresh.identity(), target=TARGET, now=2.0).before_post(7)
        head, *batches = sending.path.read_text().splitlines()
        assert (json.loads(head)["journal"], batches) == (fresh.identity(), ["7"])


def test_of_two_runs_with_two_journals_only_the_first_to_mark_the_file_sends(
    source: Path, tmp_path: Path
) -> None:
    """Two processes of one inbox, each with its own journal, found no mark before their
    claims: the second to be about to POST finds the first's mark, sends nothing and says why
    (both sent every invoice). A run of the first's journal, resuming, adds to the mark."""
    with Journal(tmp_path / "a.db") as first, Journal(tmp_path / "b.db") as second:
        Sending(source, SHA, journal=first.identity(), target=TARGET, now=1.0).before_post(1)
        late = Sending(source, SHA, journal=second.identity(), target=TARGET, now=1.0)
        with pytest.raises(MarkHeldError) as held:
            late.before_post(1)
        assert str(held.value) == (
            "another filedrop process, keeping another journal, began sending this file at "
            f"00:00:01 UTC (its mark {late.path}), as this one was about to; nothing more is "
            "sent from it here, as every process on one inbox must keep one journal: point their "
            "FILEDROP_STATE at the same one"
        )
        with pytest.raises(MarkHeldError):
            late.before_post(2)  # the next batch of the same run, on another posting thread
        Sending(source, SHA, journal=first.identity(), target=TARGET, now=5.0).before_post(3)
        head, *batches = late.path.read_text().splitlines()
        assert (json.loads(head)["journal"], batches) == (first.identity(), ["1", "3"])


def test_a_copy_of_a_file_another_journal_is_sending_is_not_sent_beside_it(
    source: Path, tmp_path: Path
) -> None:
    """Two runs with two journals at once, one sending april.csv and the other a copy under
    another name: each made the mark of its own file, and every invoice went twice (a hostile
    review, helper-140). The second about to POST finds the first's mark of the other file,
    takes its own away (its batch never went) and sends nothing; a mark of the same journal,
    of a sandbox trial, or naming no batch holds nothing back."""
    copy = source.with_name("april-kopi.csv")
    with Journal(tmp_path / "a.db") as first, Journal(tmp_path / "b.db") as second:
        Sending(source, SHA, journal=first.identity(), target=TARGET, now=1.0).before_post(1)
        trial = Sending(source, SHA, journal=second.identity(), target="sandbox:x", now=1.0)
        trial.before_post(1)  # another target's mark: no harm
        late = Sending(copy, SHA, journal=second.identity(), target=TARGET, now=2.0)
        with pytest.raises(MarkHeldError) as held:
            late.before_post(1)
        assert str(held.value) == (
            "another filedrop process, keeping another journal, began sending april.csv from "
            f"this inbox at 00:00:01 UTC (its mark {mark_path(source, SHA, TARGET)}), and this "
            "file may hold the same invoices under another name; nothing is sent from it here, "
            "as every process on one inbox must keep one journal: point their FILEDROP_STATE at "
            "the same one"
        )
        assert not late.path.exists()
        mark_path(source, SHA, TARGET).unlink()  # the other, held back by this one, took its own
        with pytest.raises(MarkHeldError):
            late.before_post(2)  # the file's next batch, on another posting thread: not sent
        assert not late.path.exists()
        own = Sending(copy, SHA, journal=first.identity(), target=TARGET, now=3.0)
        own.before_post(2)  # the same journal's other file: it knows what it sends
        assert own.path.exists()


def test_a_mark_older_than_a_journal_started_afresh_is_written_over(
    source: Path, tmp_path: Path
) -> None:
    """After 'journal rebuild --fresh', a mark from before it counts for nothing, here too."""
    with Journal(tmp_path / "a.db") as old, Journal(tmp_path / "b.db") as fresh:
        Sending(source, SHA, journal=old.identity(), target=TARGET, now=1.0).before_post(1)
        Sending(
            source, SHA, journal=fresh.identity(), target=TARGET, now=9.0, fresh_at=5.0
        ).before_post(4)
        assert json.loads(mark_path(source, SHA, TARGET).read_text().splitlines()[0])[
            "journal"
        ] == (fresh.identity())


def test_what_a_killed_writer_left_is_no_mark(source: Path, tmp_path: Path) -> None:
    folder = source.parent / SENDING_FOLDER
    folder.mkdir(parents=True)
    (folder / ".0123.json.5f3a.tmp").write_text('{"file"')
    with Journal(tmp_path / "journal.db") as journal:
        assert unknown_mark(source.parent, journal, target=TARGET) is None


def test_the_folders_a_killed_run_left_without_a_mark_go_with_the_next_outcome(
    source: Path,
) -> None:
    """Killed after making filedrop's own folder but before the marks' one: the outcome's
    clearing takes it away all the same."""
    (source.parent / ".filedrop").mkdir()
    clear_mark(source, SHA, TARGET, journal="any")
    assert list(source.parent.iterdir()) == []


def test_any_name_and_each_version_of_a_file_have_a_mark_of_their_own(
    source: Path, tmp_path: Path
) -> None:
    hostile = source.with_name("a\nb\x1b[31m\u202e" + "x" * 240 + ".csv")
    with Journal(tmp_path / "old.db") as old:
        claimed_and_marked(old, hostile)
        wrote = old.identity()
    other_version = "cd" * 32
    assert mark_path(hostile, SHA, TARGET) != mark_path(hostile, other_version, TARGET)
    assert mark_path(hostile, SHA, TARGET) != mark_path(hostile, SHA, "sandbox:trial")
    clear_mark(hostile, other_version, TARGET, journal=wrote)  # a new version's leaves it
    clear_mark(hostile, SHA, "sandbox:trial", journal=wrote)  # and so does a sandbox trial's
    with Journal(tmp_path / "new.db") as fresh:
        found = unknown_mark(source.parent, fresh, target=TARGET)
        assert found is not None and found.file == hostile.name
        assert "\\n" in found.sentence(fresh.path) and "\x1b" not in found.sentence(fresh.path)
    clear_mark(hostile, SHA, TARGET, journal=wrote)
    assert list(source.parent.iterdir()) == []


def test_a_gone_file_whose_mark_names_only_batches_that_never_went_keeps_its_outcome(
    journal_location: Path | PostgresLocation, source: Path
) -> None:
    """An outcome was written (a row NOT_SENT, Amili down); a re-take notes its batch in the
    mark, its POST fails, and it is killed; then the file goes. Nothing more reached Amili, so
    the outcome written stays the file's, and no second one saying nothing was sent is made."""
    source.write_text("number\nn-1\nn-2\n")
    with Journal(journal_location) as journal:
        record = one_sent_one_not(
            journal, source, target=TARGET, sha256=SHA, numbers=("n-1", "n-2")
        )
        outcome = source.with_name("april.outcome.csv")
        outcome.write_text("number,outcome_status\nn-1,SUCCEEDED\nn-2,NOT_SENT\n")
        journal.finish_file(
            record.id, state=FileState.RETRY, counts={"SUCCEEDED": 1, "NOT_SENT": 1},
            mapping="m", outcome=outcome, written=written_stamp(outcome),
        )  # fmt: skip
        retaken = journal.claim_file(
            path=source, sha256=SHA, target=TARGET, owner=this_owner(), stale_s=60
        )
        assert retaken is not None
        again, _ = journal.claim_batch(file_id=record.id, target=TARGET, invoice_numbers=["n-2"])
        sending = Sending(source, SHA, journal=journal.identity(), target=TARGET, now=time.time())
        sending.before_post(again)
        journal.batch_not_sent(again, message="Amili down")
        source.unlink()

        assert close_gone_file(journal.file(record.id), journal) is None
        assert sorted(p.name for p in source.parent.iterdir()) == ["april.outcome.csv"]
        gone = journal.file(record.id)
        assert (gone.state, gone.outcome) == (FileState.GONE, str(outcome))
        assert "its outcome stays as it was written" in (gone.message or "")


def test_a_gone_file_tells_its_rows_never_sent_apart_from_those_sent(
    journal_location: Path | PostgresLocation, source: Path
) -> None:
    """A file killed with one batch answered and one whose POST failed, then deleted: its
    outcome from the journal lists both, and counts only the first as sent."""
    source.write_text("number\nn-1\nn-2\n")
    with Journal(journal_location) as journal:
        record = one_sent_one_not(
            journal, source, target=TARGET, sha256=SHA, numbers=("n-1", "n-2")
        )
        source.unlink()

        report = close_gone_file(journal.file(record.id), journal)
        assert report is not None
        assert report.message == (
            "gone: 1 SUCCEEDED sent from it, listed in april.outcome.csv with 1 NOT_SENT; rows "
            "NOT_SENT or not listed there were never sent, and go when the same file is dropped "
            "again"
        )
        assert report.counts == {"SUCCEEDED": 1, "NOT_SENT": 1}
        # No run takes the file up again: its row never sent waits for a person to drop it.
        with (source.parent / "april.outcome.csv").open(encoding="utf-8-sig") as outcome:
            rows = {row["outcome_invoice_number"]: row for row in csv.DictReader(outcome)}
        assert rows["n-2"]["outcome_message"] == GONE_NOT_SENT
        assert RunReport([report]).exit_code is ExitCode.ATTENTION


def test_a_gone_file_whose_only_batch_never_went_gets_no_outcome(
    journal_location: Path | PostgresLocation, source: Path
) -> None:
    """Killed after its one POST failed (Amili down), then deleted: nothing reached Amili, so
    no outcome is written to say so, and the journal tells it in a sentence."""
    source.write_text("number\nn-1\n")
    with Journal(journal_location) as journal:
        record = journal.claim_file(
            path=source, sha256=SHA, target=TARGET, owner=this_owner(), stale_s=60
        )
        assert record is not None
        unsent, _ = journal.claim_batch(file_id=record.id, target=TARGET, invoice_numbers=["n-1"])
        journal.batch_not_sent(unsent, message="Amili down")
        source.unlink()

        assert close_gone_file(journal.file(record.id), journal) is None
        assert list(source.parent.iterdir()) == []
        gone = journal.file(record.id)
        assert (gone.state, gone.outcome) == (FileState.GONE, None)
        assert (
            gone.message == "moved, replaced or deleted while unfinished: nothing was sent from it"
        )


def test_resolve_writes_no_outcome_from_a_journal_that_does_not_know_the_mark(
    journal_location: Path | PostgresLocation, source: Path
) -> None:
    """A journal put back from a copy taken before the file's second batch: resolving its
    first rewrote the outcome from what that journal knows, calling rows unsent that went. It
    is refused in one sentence, and the mark stays."""
    source.write_text("number\nn-1\n")
    with Journal(journal_location) as journal:
        mark = claimed_and_marked(journal, source)
        record = journal.find_file(target=TARGET, name=source.name, sha256=SHA)
        assert record is not None
        Sending(source, SHA, journal=journal.identity(), target=TARGET, now=0).before_post(999)
        with pytest.raises(FiledropError, match=r"^its sending mark names batches this journal"):
            rewrite_outcome(record, journal, [], limits=ReadLimits())
        assert mark.exists()
        assert not source.with_name("april.outcome.csv").exists()
