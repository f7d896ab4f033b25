"""Fetch the published CIFAR-100 teachers into save/models/<name>_vanilla/ckpt_epoch_240.pth.

Sources, in order:
  1. the original RepDistiller host (one file per teacher; answers 404 since 2022),
  2. the `cifar_teachers.tar` asset of mdistiller's `checkpoints` release, whose members are
     `cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth`.
Override them with CRD_TEACHER_URL_PRIMARY (a template with {name}) and CRD_TEACHER_URL_MIRROR.

Exit codes: 0 all teachers valid, 1 a teacher could not be downloaded, 2 bad usage,
3 a teacher was downloaded but does not load into its architecture.
"""
import argparse
import os
import shutil
import socket
import sys
import tarfile
import urllib.error
import urllib.request
from http.client import HTTPException

from helper.runs.checkpoint import fsync_parent
from helper.errors import UsageError, close_names
from helper.engine.progress import Progress

TEACHERS = ('resnet56', 'resnet110', 'resnet32x4', 'wrn_40_2', 'vgg13', 'ResNet50')
PRIMARY_URL = 'http://shape2prog.csail.mit.edu/repo/{name}_vanilla/ckpt_epoch_240.pth'
MIRROR_URL = ('https://github.com/megvii-research/mdistiller/releases/download/'
              'checkpoints/cifar_teachers.tar')
CKPT_FILE = 'ckpt_epoch_240.pth'
CHUNK = 1 << 16
PRINT_BYTES = 1 << 24  # without a terminal, a progress line every 16 MiB


class FetchError(Exception):
    """A source could not deliver a file (HTTP error, offline, connection dropped)."""


def ckpt_dir(save_root, name):
    return os.path.join(save_root, 'models', f'{name}_vanilla')


def _publish(part_path, final_path):
    os.replace(part_path, final_path)
    fsync_parent(final_path)


def _content_range(value):
    """'bytes 10-99/100' -> (10, 100); 'bytes */100' -> (None, 100); unknown parts -> None."""
    try:
        span, total = value.split(' ', 1)[1].split('/')
        start = None if span == '*' else int(span.split('-')[0])
        return start, (None if total == '*' else int(total))
    except (AttributeError, IndexError, ValueError):
        return None, None


def _describe(err, timeout):
    if isinstance(err, urllib.error.HTTPError):
        return f'HTTP {err.code} {err.reason}'
    if isinstance(err, (socket.timeout, TimeoutError)):
        return f'timed out after {timeout:g} s'
    if isinstance(err, urllib.error.URLError):
        return f'cannot connect ({getattr(err.reason, "strerror", None) or err.reason})'
    return f'connection failed ({err})'


def _download_once(url, part_path, label, timeout):
    """One request into part_path, appending when the server honours our Range."""
    have = os.path.getsize(part_path) if os.path.exists(part_path) else 0
    request = urllib.request.Request(url, headers={'User-Agent': 'crd-emkd-fetch/1'})
    if have:
        request.add_header('Range', f'bytes={have}-')
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            _, total = _content_range(err.headers.get('Content-Range'))
            if total == have:
                return  # the part file already holds everything
            os.remove(part_path)
            return _download_once(url, part_path, label, timeout)
        raise
    with response:
        start, total = (None, None)
        if have and response.status == 206:
            start, total = _content_range(response.headers.get('Content-Range'))
        if start != have:
            # No (usable) Range support: start over instead of appending a second copy.
            have = 0
            length = response.headers.get('Content-Length')
            total = int(length) if length and length.isdigit() else None
        progress = Progress(total, desc=label, print_freq=PRINT_BYTES, unit='B', initial=have)
        with open(part_path, 'ab' if have else 'wb') as out:
            done = have
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                done += len(block)
                progress.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        progress.close(final_line=True)
    if total is not None and done != total:
        raise FetchError(f'connection closed after {done} of {total} bytes')


def download(url, part_path, label, timeout, attempts=3):
    """Download url to part_path (resuming what is there); retries while bytes keep arriving."""
    os.makedirs(os.path.dirname(os.path.abspath(part_path)), exist_ok=True)
    for attempt in range(attempts):
        before = os.path.getsize(part_path) if os.path.exists(part_path) else 0
        try:
            return _download_once(url, part_path, label, timeout)
        except urllib.error.HTTPError as err:
            raise FetchError(f'{url}: {_describe(err, timeout)}') from None
        except (urllib.error.URLError, HTTPException, OSError, FetchError) as err:
            after = os.path.getsize(part_path) if os.path.exists(part_path) else 0
            if after <= before or attempt == attempts - 1:
                detail = err if isinstance(err, FetchError) else _describe(err, timeout)
                raise FetchError(f'{url}: {detail}') from None
            print(f'  {label}: interrupted at {after} bytes, resuming', file=sys.stderr)


def verify(path, name):
    """(True, accuracy note) when path loads strictly into `name`, else (False, the reason)."""
    from models import load_model  # torch is slow to import; only needed here
    try:
        _, meta = load_model(path, name)
    except Exception as err:  # any failure to load means this is not a usable teacher
        return False, f'{type(err).__name__}: {err}'.splitlines()[0]
    accuracy = meta.get('accuracy') if isinstance(meta, dict) else None
    return True, '' if accuracy is None else f', test accuracy {float(accuracy):.2f}'


def _member_for(archive, name):
    """The archive member holding `name`'s checkpoint, ignoring unsafe or odd entries."""
    wanted = [f'{name}_vanilla', CKPT_FILE]
    for member in archive.getmembers():
        parts = [p for p in member.name.replace('\\', '/').split('/') if p not in ('', '.')]
        unsafe = member.name.startswith('/') or '..' in parts
        # Published layout is cifar_teachers/<name>_vanilla/...; allow it without the folder too.
        if not unsafe and member.isfile() and parts[-2:] == wanted and len(parts) <= 3:
            return member
    return None


def extract(archive, name, part_path):
    member = _member_for(archive, name)
    if member is None:
        raise FetchError(f'the mirror archive has no {name}_vanilla/{CKPT_FILE}')
    os.makedirs(os.path.dirname(os.path.abspath(part_path)), exist_ok=True)
    source = archive.extractfile(member)
    with source, open(part_path, 'wb') as out:
        shutil.copyfileobj(source, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())


def link(save_root, link_root, name):
    """Make link_root/<name>_vanilla show the same files; returns how."""
    target = os.path.abspath(ckpt_dir(save_root, name))
    link_path = os.path.join(link_root, f'{name}_vanilla')
    os.makedirs(link_root, exist_ok=True)
    if os.path.islink(link_path):
        if os.path.realpath(link_path) == os.path.realpath(target):
            return 'symlink'
        os.remove(link_path)
    if not os.path.isdir(link_path):
        relative = os.path.relpath(os.path.realpath(target), os.path.realpath(link_root))
        try:
            os.symlink(relative, link_path, target_is_directory=True)
            return 'symlink'
        except (OSError, NotImplementedError):
            os.makedirs(link_path)
    # A real folder (symlinks not allowed, or made by the user): put the file inside it.
    source, copy = os.path.join(target, CKPT_FILE), os.path.join(link_path, CKPT_FILE)
    if os.path.exists(copy):
        if os.path.samefile(source, copy):
            return 'hardlink'
        print(f'  {name}: left {copy} as it is (it differs from {source})')
        return 'kept'
    try:
        os.link(source, copy)
        return 'hardlink'
    except OSError:
        shutil.copy2(source, copy + '.part')
        _publish(copy + '.part', copy)
        return 'copy'


def parse_names(names):
    chosen = []
    for name in names or TEACHERS:
        if name not in TEACHERS:
            close = close_names(name, TEACHERS, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
            raise UsageError(f"unknown teacher '{name}'{hint}; choose from {', '.join(TEACHERS)}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def fetch(names, save_root='save', link_root=os.path.join('checkpoints', 'cifar100'),
          primary=PRIMARY_URL, mirror=MIRROR_URL, timeout=30.0):
    """Fetch, verify and link each teacher; returns the exit code."""
    failed = {}  # name -> exit code
    fetched, present = [], []
    missing = []
    for name in names:
        folder = ckpt_dir(save_root, name)
        final = os.path.join(folder, CKPT_FILE)
        if os.path.exists(final):
            ok, note = verify(final, name)
            if ok:
                print(f'{name}: already present at {final}{note}')
                present.append(name)
                continue
            os.replace(final, final + '.bad')
            print(f'{name}: existing file does not load ({note}); '
                  f'moved to {final}.bad, fetching again')
        part = final + '.part'
        url = primary.format(name=name)
        try:
            print(f'{name}: trying {url}')
            download(url, part, name, timeout)
        except FetchError as err:
            print(f'  {name}: primary source failed: {err}')
            missing.append(name)
            continue
        ok, note = verify(part, name)
        if ok:
            _publish(part, final)
            print(f'{name}: saved {final}{note}')
            fetched.append(name)
        else:
            os.remove(part)
            print(f'  {name}: primary source gave a file that does not load ({note})')
            missing.append(name)

    if missing:
        _fetch_from_mirror(missing, save_root, mirror, timeout, fetched, failed)

    for name in fetched + present:
        how = link(save_root, link_root, name)
        print(f'{name}: {os.path.join(link_root, name + "_vanilla")} -> '
              f'{ckpt_dir(save_root, name)} ({how})')

    _drop_archive_when_done(save_root)
    leftovers = [ckpt_dir(save_root, name) for name in failed]
    for folder in leftovers + [os.path.dirname(_archive_path(save_root))]:
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)  # a failed run leaves no empty folders behind
    parts = [f'{len(fetched)} downloaded', f'{len(present)} already present']
    if failed:
        parts.append(f'{len(failed)} failed: {", ".join(failed)}')
    print('summary: ' + ', '.join(parts))
    if any(code == 1 for code in failed.values()):
        print('error: some teachers could not be downloaded; check the network connection, or put '
              f'each file at {ckpt_dir(save_root, "<name>")}/{CKPT_FILE} by hand', file=sys.stderr)
        return 1
    return 3 if failed else 0


def published_teacher_accuracy():
    """{teacher: published top-1} from scripts/published_results.csv (the 'teachers' table)."""
    from helper.tools.report import load_published
    return {r['teacher']: r['top1'] for r in load_published() if r['table'] == 'teachers'}


def evaluate(names, save_root, data_folder, device='auto'):
    """Top-1 of each present teacher on the CIFAR-100 test set beside the published accuracy.

    Returns the number of teachers evaluated (0 when the test set is not under data_folder).
    """
    if not os.path.isfile(os.path.join(data_folder, 'cifar-100-python', 'test')):
        print(f'--eval: no CIFAR-100 test set at {os.path.join(data_folder, "cifar-100-python", "test")}; '
              'skipped (pass --data_folder)')
        return 0
    import contextlib
    from types import SimpleNamespace
    import models
    from dataset import get_loaders
    from helper.engine.loops import validate
    from helper.engine.util import pick_device

    device = pick_device(device)
    # only the test loader is used: the plain host-side data path
    opt = SimpleNamespace(dataset='cifar100', data_folder=data_folder, batch_size=256, num_workers=0, seed=0,
                          data_on_device=False, compile=False)
    _, test_loader, _ = get_loaders(opt, device)
    published = published_teacher_accuracy()
    done = 0
    for name in names:
        path = os.path.join(ckpt_dir(save_root, name), CKPT_FILE)
        if not os.path.exists(path):
            continue
        model, _ = models.load_model(path, name, num_classes=100)
        acc = validate(model.to(device), test_loader, device, contextlib.nullcontext)['acc']
        line = f'{name}: CIFAR-100 test top-1 {acc:.2f}'
        if name in published:
            line += f' (published {published[name]:.2f}, difference {acc - published[name]:+.2f})'
        print(line)
        done += 1
    return done


def _archive_path(save_root):
    return os.path.join(save_root, 'downloads', os.path.basename(MIRROR_URL))


def _fetch_from_mirror(names, save_root, mirror, timeout, fetched, failed):
    archive_path = _archive_path(save_root)
    for attempt in range(2):
        if not os.path.exists(archive_path):
            try:
                print(f'downloading the mirror archive {mirror}')
                download(mirror, archive_path + '.part', os.path.basename(archive_path), timeout)
            except FetchError as err:
                for name in names:
                    print(f'error: {name}: both sources failed; mirror: {err}', file=sys.stderr)
                    failed[name] = 1
                return
            _publish(archive_path + '.part', archive_path)
        try:
            archive = tarfile.open(archive_path)
            break
        except (tarfile.TarError, EOFError) as err:
            # A complete download that is not a tar (an error page): fetch it once more.
            print(f'  mirror archive is not a readable tar ({err}); discarding it')
            os.remove(archive_path)
    else:
        for name in names:
            print(f'error: {name}: the mirror did not serve a tar archive', file=sys.stderr)
            failed[name] = 1
        return
    with archive:
        for name in names:
            final = os.path.join(ckpt_dir(save_root, name), CKPT_FILE)
            part = final + '.part'
            try:
                extract(archive, name, part)
            except (FetchError, tarfile.TarError, EOFError, OSError) as err:
                print(f'error: {name}: cannot extract from the mirror archive: {err}',
                      file=sys.stderr)
                failed[name] = 1
                continue
            ok, note = verify(part, name)
            if not ok:
                os.remove(part)
                print(f'error: {name}: the mirror file does not load into {name}: {note} '
                      f'(delete {archive_path} to download the archive again)', file=sys.stderr)
                failed[name] = 3
                continue
            _publish(part, final)
            print(f'{name}: saved {final} (from the mirror archive){note}')
            fetched.append(name)


def _drop_archive_when_done(save_root):
    # Kept while some published teacher is still missing, so fetching it later needs no network.
    archive_path = _archive_path(save_root)
    done = all(os.path.exists(os.path.join(ckpt_dir(save_root, n), CKPT_FILE)) for n in TEACHERS)
    if done and os.path.exists(archive_path):
        os.remove(archive_path)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='fetch_pretrained_teachers.sh',
        description='Download and verify the published CIFAR-100 teacher checkpoints.')
    parser.add_argument('names', nargs='*', metavar='name',
                        help=f'teachers to fetch (default: all of {", ".join(TEACHERS)})')
    parser.add_argument('--save_root', default='save',
                        help='files go to SAVE_ROOT/models/<name>_vanilla/ (default: ./save)')
    parser.add_argument('--link_root', default=os.path.join('checkpoints', 'cifar100'),
                        help='where the <name>_vanilla links go (default: ./checkpoints/cifar100)')
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='seconds without data before a connection is given up')
    parser.add_argument('--eval', action='store_true',
                        help='evaluate each teacher on the CIFAR-100 test set under --data_folder')
    parser.add_argument('--data_folder', default='./data', help='holds cifar-100-python/ (for --eval)')
    args = parser.parse_args(argv)
    try:
        names = parse_names(args.names)
    except UsageError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    primary = os.environ.get('CRD_TEACHER_URL_PRIMARY') or PRIMARY_URL
    mirror = os.environ.get('CRD_TEACHER_URL_MIRROR') or MIRROR_URL
    code = fetch(names, args.save_root, args.link_root, primary, mirror, args.timeout)
    if args.eval:
        evaluate(names, args.save_root, args.data_folder)
    return code


if __name__ == '__main__':
    sys.exit(main())
