"""``flotilla doctor``: which services pin an older kit, or were made from an older template."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from flotilla_kit.scaffold.repository import KIT, SERVICES, Repository, read_answers, read_toml

KIT_DISTRIBUTION = "flotilla-kit"


@dataclass(frozen=True)
class ServiceState:
    """One service's kit and template versions against the repository's."""

    name: str
    kit: str | None
    template: int | None
    from_template: bool

    def problems(self, kit_version: str, template_version: int) -> list[str]:
        """Why the service is behind; empty when it is current."""
        found = []
        if self.kit is None:
            found.append(f"does not pin {KIT_DISTRIBUTION}")
        elif Version(self.kit) < Version(kit_version):
            found.append(f"pins kit {self.kit}, the kit is {kit_version}: raise the pin")
        if self.from_template and (self.template or 0) < template_version:
            found.append(
                f"made from template {self.template}, the template is {template_version}: "
                f"flotilla update {self.name}"
            )
        return found


def kit_pin(project: dict[str, object]) -> str | None:
    """The exact version a pyproject pins the kit at (``flotilla-kit==X``)."""
    for line in project.get("dependencies", []) or []:  # type: ignore[attr-defined]
        requirement = Requirement(str(line))
        if requirement.name == KIT_DISTRIBUTION:
            pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            return pinned[0] if pinned else None
    return None


def service_state(folder: Path) -> ServiceState:
    """What a service's pyproject and answers say."""
    pyproject = read_toml(folder / "pyproject.toml")
    template = pyproject.get("tool", {}).get("flotilla", {}).get("template-version")
    return ServiceState(
        name=folder.name,
        kit=kit_pin(pyproject.get("project", {})),
        template=int(template) if template is not None else None,
        from_template=bool(read_answers(folder)),
    )


def services(repository: Repository) -> list[ServiceState]:
    """Every service folder of the repository but the kit's."""
    folders = sorted((repository.root / SERVICES).glob("*/pyproject.toml"))
    return [service_state(path.parent) for path in folders if path.parent != repository.root / KIT]
