"""Demo charts: seeded random births in real cities, at dates inside the ephemeris' range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from .models import Chart
from .services import ChartInput, create_charts

# (city, latitude, longitude, IANA zone): a spread of latitudes, both hemispheres and every continent.
CITIES: tuple[tuple[str, float, float, str], ...] = (
    ("Berlin", 52.52, 13.405, "Europe/Berlin"),
    ("London", 51.5074, -0.1278, "Europe/London"),
    ("Paris", 48.8566, 2.3522, "Europe/Paris"),
    ("Rome", 41.9028, 12.4964, "Europe/Rome"),
    ("Madrid", 40.4168, -3.7038, "Europe/Madrid"),
    ("Stockholm", 59.3293, 18.0686, "Europe/Stockholm"),
    ("Reykjavik", 64.1466, -21.9426, "Atlantic/Reykjavik"),
    ("Moscow", 55.7558, 37.6173, "Europe/Moscow"),
    ("Istanbul", 41.0082, 28.9784, "Europe/Istanbul"),
    ("Cairo", 30.0444, 31.2357, "Africa/Cairo"),
    ("Lagos", 6.5244, 3.3792, "Africa/Lagos"),
    ("Nairobi", -1.2921, 36.8219, "Africa/Nairobi"),
    ("Johannesburg", -26.2041, 28.0473, "Africa/Johannesburg"),
    ("Mumbai", 19.076, 72.8777, "Asia/Kolkata"),
    ("Delhi", 28.7041, 77.1025, "Asia/Kolkata"),
    ("Beijing", 39.9042, 116.4074, "Asia/Shanghai"),
    ("Shanghai", 31.2304, 121.4737, "Asia/Shanghai"),
    ("Tokyo", 35.6762, 139.6503, "Asia/Tokyo"),
    ("Seoul", 37.5665, 126.978, "Asia/Seoul"),
    ("Singapore", 1.3521, 103.8198, "Asia/Singapore"),
    ("Jakarta", -6.2088, 106.8456, "Asia/Jakarta"),
    ("Sydney", -33.8688, 151.2093, "Australia/Sydney"),
    ("Auckland", -36.8485, 174.7633, "Pacific/Auckland"),
    ("Honolulu", 21.3069, -157.8583, "Pacific/Honolulu"),
    ("Anchorage", 61.2181, -149.9003, "America/Anchorage"),
    ("Los Angeles", 34.0522, -118.2437, "America/Los_Angeles"),
    ("Mexico City", 19.4326, -99.1332, "America/Mexico_City"),
    ("Chicago", 41.8781, -87.6298, "America/Chicago"),
    ("New York", 40.7128, -74.006, "America/New_York"),
    ("Toronto", 43.6532, -79.3832, "America/Toronto"),
    ("Bogota", 4.711, -74.0721, "America/Bogota"),
    ("Lima", -12.0464, -77.0428, "America/Lima"),
    ("Sao Paulo", -23.5505, -46.6333, "America/Sao_Paulo"),
    ("Buenos Aires", -34.6037, -58.3816, "America/Argentina/Buenos_Aires"),
)
# Births between these dates: well inside DE421 (1899-07-29 to 2053-10-09).
FIRST_BIRTH = datetime(1930, 1, 1, tzinfo=UTC)
LAST_BIRTH = datetime(2010, 12, 31, tzinfo=UTC)
NAME_PREFIX = "demo"
DEMO_BATCH = 5000  # charts per ephemeris call and bulk insert


def demo_name(seed: int, index: int) -> str:
    return f"{NAME_PREFIX}-{seed}-{index:07d}"


def demo_charts(count: int, seed: int = 0) -> list[ChartInput]:
    """``count`` public demo charts; the same seed gives the same charts (and names)."""
    rng = np.random.default_rng(seed)
    cities = rng.integers(0, len(CITIES), count)
    span_minutes = int((LAST_BIRTH - FIRST_BIRTH).total_seconds() // 60)
    minutes = rng.integers(0, span_minutes, count)
    charts = []
    for n in range(count):
        _city, lat, lon, zone = CITIES[int(cities[n])]
        charts.append(
            ChartInput(
                name=demo_name(seed, n),
                is_public=True,
                birth_datetime=FIRST_BIRTH + timedelta(minutes=int(minutes[n])),
                latitude=lat,
                longitude=lon,
                time_zone=zone,
            )
        )
    return charts


def create_demo_charts(count: int, seed: int = 0) -> int:
    """Create the demo charts of ``seed`` that are not there yet (idempotent); returns how many were created."""
    wanted = demo_charts(count, seed)
    existing = set(Chart.objects.filter(name__startswith=f"{NAME_PREFIX}-{seed}-").values_list("name", flat=True))
    missing = [chart for chart in wanted if chart.name not in existing]
    for first in range(0, len(missing), DEMO_BATCH):
        create_charts(None, missing[first : first + DEMO_BATCH])
    return len(missing)
