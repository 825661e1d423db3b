/**
 * Runs our CLI on a fresh 80x24 pseudo-terminal (python3's pty module), as a person at a
 * terminal would: stdin, stdout and stderr are the terminal, so the result's `stdout` is
 * everything the terminal showed (both streams, with CR LF line ends). A confirmation
 * prompt ("Write this change", check-access's fix) is answered with `answer`, typed in
 * two parts as a person would; or, with `typeAfter`, `answer` is typed once `text` has been
 * shown `times` times (Ctrl-C for a live view, say).
 */
import {PROJECT_BIN, PROJECT_ROOT, runCommand, type RunResult} from './postfix.js'

const PTY_DRIVER = `
import os, pty, sys, time, select, struct, fcntl, termios
answer = os.environ.get("PTY_ANSWER", "n\\r").encode()
cue = os.environ.get("PTY_CUE", "Write this change").encode()
cue_times = int(os.environ.get("PTY_CUE_TIMES", "1"))
pid, fd = pty.fork()
if pid == 0:
    # A terminal with a size, as people have (a bare pty reports 0 columns).
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    os.execvp(sys.argv[1], sys.argv[1:])
out = b""
sent = False
deadline = time.time() + 50
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
        if not sent and out.count(cue) >= cue_times:
            time.sleep(0.3)
            os.write(fd, answer[:1])
            time.sleep(0.3)
            os.write(fd, answer[1:])
            sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
`

export function runOnTerminal(args: string[], opts: {env?: NodeJS.ProcessEnv; answer?: string; typeAfter?: {text: string; times: number}} = {}): Promise<RunResult> {
  const env = {
    ...(opts.env ?? process.env), TERM: 'xterm-256color',
    ...(opts.answer === undefined ? {} : {PTY_ANSWER: opts.answer}),
    ...(opts.typeAfter === undefined ? {} : {PTY_CUE: opts.typeAfter.text, PTY_CUE_TIMES: String(opts.typeAfter.times)}),
  }
  return runCommand('python3', ['-c', PTY_DRIVER, process.execPath, PROJECT_BIN, ...args], {cwd: PROJECT_ROOT, env, timeoutMs: 60_000})
}
