"""The upstream-format loaders (amazon2014, movielens-1m, lastfm-hetrec2011, interactions) on tiny fixtures."""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidrec.cli import main
from sidrec.config import DataConfig
from sidrec.data import amazon2014, lastfm, load_dataset, movielens
from sidrec.errors import SidrecError
from tests.data.test_download import serving

# ------------------------------------------------------------------ amazon2014

REVIEWS = [  # file order matters: u1's A and C share a time
    {"reviewerID": "u1", "asin": "A", "unixReviewTime": 300, "overall": 5.0},
    {"reviewerID": "u2", "asin": "B", "unixReviewTime": 100},
    {"reviewerID": "u1", "asin": "B", "unixReviewTime": 100},
    {"reviewerID": "u1", "asin": "C", "unixReviewTime": 300},
    {"reviewerID": "u2", "asin": "A", "unixReviewTime": 50},
]
META = [  # written with repr(): single-quoted Python literals, not JSON
    {"asin": "A", "title": "L'Oréal \"Elvive\" shampoo", "categories": [["Beauty", "Hair Care"], ["Beauty", "Sale"]],
     "brand": "L'Oréal", "price": 6.99, "salesRank": {"Beauty": 12}, "related": {"also_bought": ["B"]}},
    {"asin": "B", "categories": [["Beauty"]], "description": "no title here"},
    {"asin": "C", "title": "Comb", "brand": "", "price": 2},
    {"asin": "Z", "title": "meta-only item nobody reviewed"},
]


def write_amazon(root: Path, reviews=REVIEWS, meta_lines=None, category="Beauty") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with gzip.open(root / f"reviews_{category}_5.json.gz", "wt", encoding="utf-8") as f:
        f.writelines((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in reviews)
    with gzip.open(root / f"meta_{category}.json.gz", "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in (meta_lines or [repr(m) for m in META]))
    return root


def amazon(root: Path, category="Beauty"):
    return load_dataset(DataConfig(dataset="amazon2014", path=str(root), category=category))


def test_amazon_orders_by_time_with_stable_ties_and_parses_literals(tmp_path: Path):
    ds = amazon(write_amazon(tmp_path))
    assert ds.sequences == {"u1": ["B", "A", "C"], "u2": ["A", "B"]}
    assert ds.items["A"] == {
        "title": "L'Oréal \"Elvive\" shampoo",
        "categories": [["Beauty", "Hair Care"], ["Beauty", "Sale"]],
        "brand": "L'Oréal",
        "description": None,
        "price": "6.99",
    }
    assert ds.items["B"] == {"title": None, "categories": [["Beauty"]], "brand": None, "description": "no title here", "price": None}
    assert ds.items["C"]["brand"] is None and ds.items["C"]["price"] == "2"
    assert ds.name == "amazon2014-Beauty"
    assert ds.locations["u2"].endswith("reviews_Beauty_5.json.gz:2")


def test_amazon_other_category_file_names(tmp_path: Path):
    ds = amazon(write_amazon(tmp_path, category="Toys_and_Games"), category="Toys_and_Games")
    assert [p.name for p in ds.sources] == ["reviews_Toys_and_Games_5.json.gz", "meta_Toys_and_Games.json.gz"]


def test_amazon_unknown_category_lists_valid_ones(tmp_path: Path):
    with pytest.raises(SidrecError, match=r"unknown amazon2014 category 'Beuty'; valid categories: .*Beauty.*Pet_Supplies"):
        amazon(write_amazon(tmp_path), category="Beuty")


@pytest.mark.parametrize(
    "reviews, meta_lines, message",
    [
        (REVIEWS[:1] + ['{"reviewerID": "u9", "asin": '], None, r"reviews_Beauty_5.json.gz:2: malformed JSON"),
        ([{"reviewerID": "u1", "asin": "A"}], None, r"reviews_Beauty_5.json.gz:1: missing field 'unixReviewTime'"),
        ([{"reviewerID": "u1", "asin": "A", "unixReviewTime": "soon"}], None, r"json.gz:1: unixReviewTime must be an integer"),
        (REVIEWS, [repr(META[1]), "{'asin': 'A', 'title': 'unterminated}"], r"meta_Beauty.json.gz:2: malformed Python literal"),
        (REVIEWS, [repr(META[0]), repr(META[1])], r"reviews_Beauty_5.json.gz:1: item 'C' of user 'u1' has no record in .*meta_Beauty.json.gz"),
    ],
)
def test_amazon_bad_lines_name_file_and_line(tmp_path: Path, reviews, meta_lines, message):
    with pytest.raises(SidrecError, match=message):
        amazon(write_amazon(tmp_path, reviews, meta_lines))


def test_amazon_missing_file(tmp_path: Path):
    root = write_amazon(tmp_path)
    (root / "meta_Beauty.json.gz").unlink()
    with pytest.raises(SidrecError, match=r"amazon2014 metadata file not found: .*meta_Beauty.json.gz"):
        amazon(root)


def test_amazon_downloads_when_no_path_is_given(tmp_path: Path, monkeypatch):
    root = write_amazon(tmp_path / "upstream")
    files = {f"/cat/{p.name}": p.read_bytes() for p in root.iterdir()}
    with serving(files) as server:
        monkeypatch.setattr(amazon2014, "BASE_URL", server.url("/cat/"))
        ds = load_dataset(DataConfig(dataset="amazon2014", category="Beauty"))
    assert ds.sequences == amazon(root).sequences
    assert all("downloads/amazon2014" in p.as_posix() for p in ds.sources)


# ------------------------------------------------------------------ movielens-1m

RATINGS = "1::10::5::300\n2::20::3::100\n1::20::4::100\n1::30::1::300\n1::40::2::50\n2::10::4::100\n"
MOVIES = "10::Misérables, Les (1995)::Drama|Musical\n20::Toy Story (1995)::Animation|Children's|Comedy\n30::Heat (1995)::Action\n40::Jumanji (1995)::\n"


def write_movielens(root: Path, ratings=RATINGS, movies=MOVIES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.dat").write_bytes(ratings.encode("latin-1"))
    (root / "movies.dat").write_bytes(movies.encode("latin-1"))
    return root


def movielens_ds(path: Path | str):
    return load_dataset(DataConfig(dataset="movielens-1m", path=str(path)))


def test_movielens_latin1_genres_and_stable_time_order(tmp_path: Path):
    ds = movielens_ds(write_movielens(tmp_path))
    assert ds.sequences == {"1": ["40", "20", "10", "30"], "2": ["20", "10"]}
    assert ds.items["10"]["title"] == "Misérables, Les (1995)"
    assert ds.items["10"]["categories"] == ["Drama", "Musical"]
    assert ds.items["20"]["categories"] == ["Animation", "Children's", "Comedy"]
    assert ds.items["40"]["categories"] is None
    assert ds.locations["2"].endswith("ratings.dat:2")


def test_movielens_reads_ml1m_subdirectory(tmp_path: Path):
    write_movielens(tmp_path / "ml-1m")
    assert movielens_ds(tmp_path).sequences["2"] == ["20", "10"]


@pytest.mark.parametrize(
    "ratings, movies, message",
    [
        (RATINGS + "3::10::5\n", MOVIES, r"ratings.dat:7: expected 4 '::'-separated fields, got 3"),
        ("1::10::5::noon\n", MOVIES, r"ratings.dat:1: timestamp 'noon' is not an integer"),
        (RATINGS, MOVIES + "50::Odd\n", r"movies.dat:5: expected 3 '::'-separated fields, got 2"),
        (RATINGS, MOVIES + "10::Again (1995)::Drama\n", r"movies.dat:5: duplicate MovieID '10'"),
        (RATINGS + "3::99::5::1\n", MOVIES, r"ratings.dat:7: item '99' of user '3' has no record in .*movies.dat"),
    ],
)
def test_movielens_bad_lines(tmp_path: Path, ratings, movies, message):
    with pytest.raises(SidrecError, match=message):
        movielens_ds(write_movielens(tmp_path, ratings, movies))


def test_movielens_missing_files(tmp_path: Path):
    with pytest.raises(SidrecError, match=r"ratings.dat not found in .* or .*ml-1m"):
        movielens_ds(tmp_path)
    (write_movielens(tmp_path) / "movies.dat").unlink()
    with pytest.raises(SidrecError, match=r"MovieLens movies file not found: .*movies.dat"):
        movielens_ds(tmp_path)


def test_movielens_download_extracts_into_cache_once(tmp_path: Path, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", RATINGS.encode("latin-1"))
        zf.writestr("ml-1m/movies.dat", MOVIES.encode("latin-1"))
    with serving({"/ml-1m.zip": buf.getvalue()}) as server:
        monkeypatch.setattr(movielens, "URL", server.url("/ml-1m.zip"))
        first = movielens_ds("")
    second = movielens_ds("")  # server gone: the cached, extracted copy is used
    assert first.sequences == second.sequences == {"1": ["40", "20", "10", "30"], "2": ["20", "10"]}
    assert server.ranges == [None]
    assert second.items["10"]["title"] == "Misérables, Les (1995)"


def test_prepare_cli_end_to_end_on_movielens(tmp_path: Path, capsys):
    ratings = "".join(f"{u}::{m}::5::{100 * m + u}\n" for u in (1, 2, 3) for m in (10, 20, 30, 40))
    root = write_movielens(tmp_path / "ml", ratings=ratings)
    run = tmp_path / "run"
    code = main(["prepare", "-w", str(run), "data.dataset=movielens-1m", f"data.path={root}", "data.min_count=2"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["dataset"] == "movielens-1m"
    assert manifest["counts"] == {"users": 3, "items": 4, "interactions": 12}
    assert pq.read_table(run / "data" / "items.parquet").column("title").to_pylist()[0] == "Misérables, Les (1995)"


# ------------------------------------------------------------------ lastfm-hetrec2011

EVENTS = "userID\tartistID\ttagID\ttimestamp\n2\t52\t10\t1000\n2\t51\t11\t2000\n2\t51\t10\t1000\n2\t53\t12\t500\n3\t51\t10\t7\n3\t52\t12\t9\n"
ARTISTS = "id\tname\turl\tpictureURL\n51\tBjörk\thttp://www.last.fm/music/Bj%C3%B6rk\t\n52\tMotörhead\thttp://x\thttp://y.jpg\n"
TAGS = "tagID\ttagValue\n10\trock\n11\tindie\n12\télectronique\n"


def write_lastfm(root: Path, events=EVENTS, artists=ARTISTS, tags: str | None = TAGS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "user_taggedartists-timestamps.dat").write_text(events, encoding="utf-8")
    (root / "artists.dat").write_text(artists, encoding="utf-8")
    if tags is not None:
        (root / "tags.dat").write_bytes(tags.encode("latin-1"))
    return root


def lastfm_ds(root: Path):
    return load_dataset(DataConfig(dataset="lastfm-hetrec2011", path=str(root)))


def test_lastfm_one_interaction_per_artist_at_first_tag_time(tmp_path: Path):
    ds = lastfm_ds(write_lastfm(tmp_path))
    # 53 @500; 52 @1000 (line 2) before 51 @1000 (its earliest tag, line 4): ties keep line order
    assert ds.sequences == {"2": ["53", "52", "51"], "3": ["51", "52"]}
    assert ds.items["51"]["title"] == "Björk"
    assert ds.items["51"]["categories"] == ["rock", "indie"]  # tag 10 twice, tag 11 once
    assert ds.items["52"]["categories"] == ["rock", "électronique"]  # tied counts: first seen first
    assert ds.items["53"] == {"title": None, "categories": ["électronique"], "brand": None, "description": None, "price": None}


def test_lastfm_without_tags_file_has_no_categories(tmp_path: Path):
    ds = lastfm_ds(write_lastfm(tmp_path, tags=None))
    assert ds.items["51"]["categories"] is None and ds.items["52"]["title"] == "Motörhead"
    assert [p.name for p in ds.sources] == ["user_taggedartists-timestamps.dat", "artists.dat"]


def test_lastfm_latin1_artists_file_is_accepted(tmp_path: Path):
    root = write_lastfm(tmp_path)
    (root / "artists.dat").write_bytes(ARTISTS.encode("latin-1"))
    assert lastfm_ds(root).items["51"]["title"] == "Björk"


@pytest.mark.parametrize(
    "events, artists, message",
    [
        (EVENTS + "4\t51\t10\tlater\n", ARTISTS, r"user_taggedartists-timestamps.dat:8: timestamp 'later' is not an integer"),
        (EVENTS + "4\t51\n", ARTISTS, r"user_taggedartists-timestamps.dat:8: expected 4 tab-separated fields, got 2"),
        (EVENTS, ARTISTS + "51\tBjork again\t\t\n", r"artists.dat:4: duplicate artist id '51'"),
    ],
)
def test_lastfm_bad_lines(tmp_path: Path, events, artists, message):
    with pytest.raises(SidrecError, match=message):
        lastfm_ds(write_lastfm(tmp_path, events, artists))


def test_lastfm_missing_files(tmp_path: Path):
    with pytest.raises(SidrecError, match=r"user_taggedartists-timestamps.dat not found in"):
        lastfm_ds(tmp_path)
    (write_lastfm(tmp_path / "hetrec2011-lastfm-2k") / "artists.dat").unlink()
    with pytest.raises(SidrecError, match=r"Last.fm artists file not found: .*artists.dat"):
        lastfm_ds(tmp_path)


# ------------------------------------------------------------------ interactions

LOG_CSV = "user,item,timestamp,rating\nu1,007,30,5\nu2,b,10,1\nu1,b,10,2\nu1,c,30,3\nu2,007,5,4\n"
ITEMS_CSV = 'item,title,categories,price,extra\n007,"Bond, James",Film,9.90,x\nb,Bee,,,\nc,,Misc,1,\n'


def interactions_ds(log: Path, items: Path):
    return load_dataset(DataConfig(dataset="interactions", path=str(log), items_path=str(items)))


def write_csvs(root: Path, log=LOG_CSV, items=ITEMS_CSV) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "log.csv").write_text(log)
    (root / "items.csv").write_text(items)
    return root / "log.csv", root / "items.csv"


def test_interactions_csv(tmp_path: Path):
    ds = interactions_ds(*write_csvs(tmp_path))
    assert ds.sequences == {"u1": ["b", "007", "c"], "u2": ["007", "b"]}
    # a catalogue's own column ("extra") is kept as a text field (issue 16)
    assert ds.items["007"] == {"title": "Bond, James", "categories": "Film", "brand": None, "description": None, "price": "9.90", "extra": "x"}
    assert ds.items["b"]["categories"] is None and ds.items["b"]["extra"] is None and ds.items["c"]["title"] is None
    assert ds.locations == {"u1": f"{tmp_path / 'log.csv'}, row 2", "u2": f"{tmp_path / 'log.csv'}, row 3"}


def test_interactions_parquet_with_datetimes_and_list_categories(tmp_path: Path):
    stamps = pa.array(["2024-01-02T00:00:00", "2024-01-01T00:00:00", "2024-01-02T00:00:00"]).cast(pa.timestamp("s"))
    pq.write_table(pa.table({"user": [1, 1, 2], "item": [7, 8, 9], "timestamp": stamps}), tmp_path / "log.parquet")
    items = pa.table({"item": ["7", "8", "9"], "categories": [["A", "B"], None, []], "price": [1.5, None, 2.0]})
    pq.write_table(items, tmp_path / "items.parquet")
    ds = interactions_ds(tmp_path / "log.parquet", tmp_path / "items.parquet")
    assert ds.sequences == {"1": ["8", "7"], "2": ["9"]}
    assert ds.items["7"]["categories"] == ["A", "B"] and ds.items["7"]["price"] == "1.5"
    assert ds.items["9"]["categories"] is None and ds.items["8"]["title"] is None


@pytest.mark.parametrize(
    "log, items, message",
    [
        ("user,item,time\nu1,a,1\n", ITEMS_CSV, r"log.csv: missing column 'timestamp'; found columns: user, item, time"),
        (LOG_CSV + "u3,b,,1\n", ITEMS_CSV, r"log.csv, row 7: empty 'timestamp'"),
        (LOG_CSV + ",b,9,1\n", ITEMS_CSV, r"log.csv, row 7: empty 'user'"),
        (LOG_CSV + "u3,b\n", ITEMS_CSV, r"log.csv: cannot read CSV \(row 7: expected 4 comma-separated fields, got 2\)"),
        ("user,item,timestamp\nu1,a,yesterday\n", ITEMS_CSV, r"log.csv: column 'timestamp' has type string"),
        (LOG_CSV, ITEMS_CSV + "b,Bee again,,,\n", r"items.csv, row 5: duplicate item 'b'"),
        (LOG_CSV, "title\nx\n", r"items.csv: missing column 'item'; found columns: title"),
        (LOG_CSV + "u3,zz,1,1\n", ITEMS_CSV, r"log.csv, row 7: item 'zz' of user 'u3' has no record in .*items.csv"),
    ],
)
def test_interactions_bad_inputs(tmp_path: Path, log, items, message):
    with pytest.raises(SidrecError, match=message):
        interactions_ds(*write_csvs(tmp_path, log, items))


def test_interactions_needs_both_paths_and_known_formats(tmp_path: Path):
    log, items = write_csvs(tmp_path)
    with pytest.raises(SidrecError, match=re.escape("needs data.items_path")):
        load_dataset(DataConfig(dataset="interactions", path=str(log)))
    with pytest.raises(SidrecError, match=r"interactions file not found: .*absent.csv"):
        interactions_ds(tmp_path / "absent.csv", items)
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(SidrecError, match=r"log.json: unsupported file type; expected one of .csv"):
        interactions_ds(tmp_path / "log.json", items)
