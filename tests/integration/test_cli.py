"""The ``boxoffice`` command against a real PostgreSQL event store."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.movie import movie_id
from infra.adapters.settings import Settings
from tests.conftest import CATALOG_PATH

pytestmark = pytest.mark.integration


def boxoffice(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with the test's event store and return what it printed."""
    env = {**os.environ, "BOXOFFICE_POSTGRES_URL": settings.require("POSTGRES_URL")}
    command = [sys.executable, "-m", "infra.runtime.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


class TestImportMovies:
    def test_real_catalogue_reports_rejects(self, settings: Settings) -> None:
        first = boxoffice(settings, "import-movies", str(CATALOG_PATH))
        second = boxoffice(settings, "import-movies", str(CATALOG_PATH))

        assert first.returncode == 0, first.stderr
        assert "rejected record 3053: Title is missing (null)" in first.stderr
        assert "3200 movies registered, 0 revised, 0 unchanged, 1 record rejected" in (
            first.stderr
        )
        assert second.returncode == 0, second.stderr
        assert "0 movies registered, 0 revised, 3200 unchanged" in second.stderr

    def test_invalid_file_exits_with_reason(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        broken = tmp_path / "broken.json"
        broken.write_text('{"Title": "not a list"}')

        result = boxoffice(settings, "import-movies", str(broken))

        assert result.returncode == 2
        assert "holds a JSON dict, expected a list" in result.stderr

    def test_missing_file_exits_with_reason(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        result = boxoffice(settings, "import-movies", str(tmp_path / "nowhere.json"))

        assert result.returncode == 2
        assert "cannot read catalogue" in result.stderr


class TestSchedule:
    def test_unknown_auditorium_is_rejected(self, settings: Settings) -> None:
        result = boxoffice(
            settings,
            "schedule",
            "--movie-id",
            "3da78366-5a0c-5ac1-acda-288c29e64313",
            "--auditorium",
            "hall-9",
            "--starts-at",
            "2030-01-01T19:00:00+00:00",
        )

        assert result.returncode == 2
        assert "unknown auditorium 'hall-9'" in result.stderr

    def test_showtime_for_imported_movie_is_scheduled(self, settings: Settings) -> None:
        boxoffice(settings, "import-movies", str(CATALOG_PATH))
        args = [
            "schedule",
            "--movie-id",
            "3da78366-5a0c-5ac1-acda-288c29e64313",  # The Land Girls (1998)
            "--auditorium",
            "hall-1",
            "--starts-at",
            "2030-01-01T19:00:00+00:00",
        ]

        first = boxoffice(settings, *args)
        again = boxoffice(settings, *args)

        assert first.returncode == 0, first.stderr
        assert again.stdout == first.stdout
        assert len(first.stdout.strip()) == 36

    def test_past_start_is_rejected(self, settings: Settings) -> None:
        boxoffice(settings, "import-movies", str(CATALOG_PATH))

        result = boxoffice(
            settings,
            "schedule",
            "--movie-id",
            "3da78366-5a0c-5ac1-acda-288c29e64313",
            "--auditorium",
            "hall-1",
            "--starts-at",
            "2020-01-01T19:00:00+00:00",
        )

        assert result.returncode == 2
        assert "is in the past" in result.stderr

    def test_other_movie_at_same_slot_is_rejected(self, settings: Settings) -> None:
        boxoffice(settings, "import-movies", str(CATALOG_PATH))
        slot = ["--auditorium", "hall-1", "--starts-at", "2030-01-01T19:00:00+00:00"]
        land_girls = "3da78366-5a0c-5ac1-acda-288c29e64313"
        other = movie_id("Bathory", "2008-07-10")

        first = boxoffice(settings, "schedule", "--movie-id", land_girls, *slot)
        clash = boxoffice(settings, "schedule", "--movie-id", str(other), *slot)

        assert first.returncode == 0, first.stderr
        assert clash.returncode == 2
        assert "already shows movie" in clash.stderr
