"""Server paths from the web stay inside the configured roots: `..`, symbolic links and relative paths
cannot lead out, and the file browser lists only what lies inside."""
import pytest

from jobs.paths import PathOutsideRoots, path_confine, path_listing


@pytest.fixture
def roots(settings, tmp_path):
    data, other = tmp_path / "data", tmp_path / "other"
    (data / "patches").mkdir(parents=True)
    (data / "patches" / "manifest.csv").write_text("path\n")
    (data / "zeta").mkdir()
    other.mkdir()
    (other / "secret.txt").write_text("no")
    (data / "escape").symlink_to(other)
    settings.HISTOSYNTH_DATA_ROOTS = [data]
    settings.HISTOSYNTH_WEIGHTS_ROOT = tmp_path / "weights"
    return data, other


def test_paths_inside_a_root_are_accepted_and_resolved(roots):
    data, _ = roots
    assert path_confine(data / "patches", group="data", must="dir") == data / "patches"
    assert path_confine(f"{data}/zeta/../patches/manifest.csv", group="data", must="file") == \
        data / "patches" / "manifest.csv"
    assert path_confine(data / "runs" / "new", group="data", must="new") == data / "runs" / "new"


@pytest.mark.parametrize("make_value, words", [
    (lambda data, other: other / "secret.txt", "outside the allowed folders"),
    (lambda data, other: f"{data}/../other/secret.txt", "outside the allowed folders"),
    (lambda data, other: data / "escape" / "secret.txt", "outside the allowed folders"),  # symbolic link out
    (lambda data, other: "patches", "not an absolute path"),
    (lambda data, other: "/etc/passwd", "outside the allowed folders"),
])
def test_paths_outside_the_roots_are_refused_naming_the_field(roots, make_value, words):
    with pytest.raises(PathOutsideRoots, match=words) as caught:
        path_confine(make_value(*roots), group="data", must="any", field="checkpoint")
    assert str(caught.value).startswith("checkpoint: ")


def test_the_path_must_be_what_the_parameter_asks_for(roots):
    data, _ = roots
    with pytest.raises(PathOutsideRoots, match="is not a file"):
        path_confine(data / "patches", group="data", must="file")
    with pytest.raises(PathOutsideRoots, match="is not a folder"):
        path_confine(data / "patches" / "manifest.csv", group="data", must="dir")
    with pytest.raises(PathOutsideRoots, match="does not exist"):
        path_confine(data / "nothing", group="data", must="any")
    with pytest.raises(PathOutsideRoots, match="is a file, not a folder"):
        path_confine(data / "patches" / "manifest.csv", group="data", must="new")
    with pytest.raises(PathOutsideRoots, match="outside the allowed folders"):
        path_confine(data / "patches", group="weights", must="dir")  # another group's root


def test_listing_shows_folders_first_and_nothing_outside(roots):
    data, other = roots
    listing = path_listing(group="data")
    assert listing.folder == data and listing.parent is None
    assert [(e.name, e.is_dir) for e in listing.entries] == [("patches", True), ("zeta", True)]  # no link out
    inner = path_listing(group="data", folder=str(data / "patches"))
    assert inner.parent == data and [e.name for e in inner.entries] == ["manifest.csv"]
    with pytest.raises(PathOutsideRoots):
        path_listing(group="data", folder=str(other))
    with pytest.raises(PathOutsideRoots):
        path_listing(group="data", folder=f"{data}/..")
