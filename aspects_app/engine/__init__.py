"""The aspects engine: NumPy (or CuPy) only, importable without Django.

The names below are the engine's public contract (see docs/architecture.md); host code calls them.
"""

from .aspects import (
    ASPECT_ANGLES,
    ASPECT_NAMES,
    KERYKEION_ALL_ORBS,
    KERYKEION_DEFAULT_ORBS,
    MAJOR_ASPECTS,
    ORB_PRESETS,
    STANDARD_POINTS,
    AspectConfig,
)
from .backend import BACKEND_NAMES, Backend, BackendUnavailable, get_backend
from .calculator import MemoryOptimizedVectorizedCalculator, memory_optimized_processing
from .hits import MOVEMENTS, AspectHits
from .monitor import LeakReport, VectorizedPerformanceMonitor
from .patterns import PATTERN_NAMES, ChartPatterns, natal_patterns, synastry_patterns
from .pool import ArrayPool
from .scoring import SCORE_METHODS
from .topk import TopK
from .transit_events import SkyEvents, TransitEvents
from .transits import TRANSIT_ORBS, TransitTrack, sky_events
from .zodiac import ELEMENTS, MODALITIES, SIGN_NAMES, ZodiacPositions, zodiac_positions

# Part of every persisted result's key: bump it whenever a change alters any result, so old ones are not served.
ENGINE_VERSION = "1"

__all__ = [
    "ASPECT_ANGLES",
    "ASPECT_NAMES",
    "BACKEND_NAMES",
    "ELEMENTS",
    "ENGINE_VERSION",
    "KERYKEION_ALL_ORBS",
    "KERYKEION_DEFAULT_ORBS",
    "MAJOR_ASPECTS",
    "MODALITIES",
    "MOVEMENTS",
    "ORB_PRESETS",
    "PATTERN_NAMES",
    "SCORE_METHODS",
    "SIGN_NAMES",
    "STANDARD_POINTS",
    "TRANSIT_ORBS",
    "ArrayPool",
    "AspectConfig",
    "AspectHits",
    "Backend",
    "BackendUnavailable",
    "ChartPatterns",
    "LeakReport",
    "MemoryOptimizedVectorizedCalculator",
    "SkyEvents",
    "TopK",
    "TransitEvents",
    "TransitTrack",
    "VectorizedPerformanceMonitor",
    "ZodiacPositions",
    "get_backend",
    "memory_optimized_processing",
    "natal_patterns",
    "sky_events",
    "synastry_patterns",
    "zodiac_positions",
]
