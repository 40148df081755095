"""selor.conf read again on SIGHUP and by `selorctl reload` (issue 11):
live options reach new sessions, open sessions keep what they started
with, options that need a restart keep their value and Warning_log names
them, and a file that fails to load changes nothing."""
import os
import signal
import subprocess
import time

from selortest import SELORCTL, wait_for


def greeting(node):
    s = node.connect()
    s.close()
    return s


def banner(node):
    import socket
    with socket.create_connection((node.host, node.port), timeout=10) as c:
        c.settimeout(10)
        return c.recv(512).decode()


def hup(node):
    os.kill(node.proc.pid, signal.SIGHUP)


def rewrite(node, **changes):
    node.options.update(changes)
    node.write_conf()


def test_new_welcome_reaches_new_sessions_only(nodes):
    n = nodes(options={"Msg_welcome": "220 old banner"}).start()
    held = n.connect()                       # opened before the reload
    assert "old banner" in banner(n)
    rewrite(n, Msg_welcome="220 new banner")
    hup(n)
    wait_for(lambda: "new banner" in banner(n), timeout=10, what="the new Msg_welcome")
    wait_for(lambda: "use: Msg_welcome" in n.log("warning"), timeout=5, what="the reload's log line")
    # every worker has it (two workers, SO_REUSEPORT spreads connections)
    assert all("new banner" in banner(n) for _ in range(12))
    # the open session is untouched: it goes on with its own settings
    held.sendall(b"EHLO client.test\r\n")
    assert held.reply().startswith(b"250")
    held.sendall(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert held.reply().startswith(b"250")
    assert held.reply().startswith(b"250")
    assert held.reply().startswith(b"354")
    held.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert held.reply().startswith(b"250")
    held.sendall(b"QUIT\r\n")
    held.close()


def test_syntax_error_changes_nothing_and_names_the_line(nodes):
    n = nodes(options={"Msg_welcome": "220 steady banner"}).start()
    rewrite(n, Msg_welcome="220 never seen")
    with open(n.conf, "a") as f:
        f.write("Timeout \"not a number\n")
    lines = open(n.conf).read().count("\n")
    hup(n)
    wait_for(lambda: "nothing changed" in n.log("warning"), timeout=10,
             what="the failed reload's warning")
    warn = [l for l in n.log("warning").splitlines() if "nothing changed" in l][0]
    assert "%s:%d:" % (n.conf, lines) in warn, warn
    time.sleep(0.5)   # the children read the same file: they keep theirs too
    assert all("steady banner" in banner(n) for _ in range(8))
    assert n.proc.poll() is None


def test_restart_options_keep_their_value_and_are_named(nodes):
    n = nodes(options={"Msg_welcome": "220 first"}).start()
    port = n.port
    rewrite(n, Port=port + 1, Smtp_workers=3, Msg_welcome="220 second")
    hup(n)
    wait_for(lambda: "needs a restart" in n.log("warning"), timeout=10,
             what="the restart warning")
    warn = n.log("warning")
    assert "Port changed: needs a restart" in warn
    assert "Smtp_workers changed: needs a restart" in warn
    # the node still listens where it did, and took the live change
    n.options["Port"] = port
    wait_for(lambda: "second" in banner(n), timeout=10, what="the live change")
    assert len(n.children()) == 3     # 2 workers + the queue process, as before


def test_live_limit_applies_to_the_next_session(nodes):
    n = nodes().start()
    c = n.smtp()
    c.ehlo("client.test")
    c.mail("a@remote.test")
    for i in range(3):
        assert c.rcpt("alice@example.com")[0] == 250
    c.quit()
    rewrite(n, Max_rcpts=2)
    hup(n)
    wait_for(lambda: "use: Max_rcpts" in n.log("warning"), timeout=10, what="the reload")
    time.sleep(0.3)
    c = n.smtp()
    c.ehlo("client.test")
    c.mail("a@remote.test")
    codes = [c.rcpt("alice@example.com")[0] for _ in range(3)]
    c.quit()
    assert codes[:2] == [250, 250] and codes[2] >= 400, codes


def test_changed_log_path_is_reopened(nodes):
    n = nodes().start()
    new_log = os.path.join(n.logdir, "central2.log")
    rewrite(n, Central_log=new_log)
    hup(n)
    wait_for(lambda: "use: Central_log" in n.log("warning"), timeout=10, what="the reload")
    tries = iter(range(1000))

    def in_new_log(name):
        return os.path.exists(new_log) and name in open(new_log).read()

    def session_lands():
        # the workers take the reload a moment after the master logged it
        name = "try%d.test" % next(tries)
        c = n.smtp()
        c.ehlo(name)
        c.quit()
        return any(in_new_log(name) or time.sleep(0.1) for _ in range(10))
    wait_for(session_lands, timeout=20, interval=0.2, what="a session in the new Central_log")
    # then every worker writes there (SO_REUSEPORT spreads the sessions)
    for i in range(8):
        c = n.smtp()
        c.ehlo("after%d.test" % i)
        c.quit()
    wait_for(lambda: all(in_new_log("after%d.test" % i) for i in range(8)), timeout=10,
             what="every session in the new Central_log")


def test_selorctl_reload(nodes):
    n = nodes(options={"Msg_welcome": "220 before ctl"}).start()
    rewrite(n, Msg_welcome="220 after ctl")
    r = subprocess.run([SELORCTL, "-c", n.conf, "reload"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "reload" in r.stdout
    wait_for(lambda: "after ctl" in banner(n), timeout=10, what="the reloaded banner")


def test_selorctl_reload_refuses_a_broken_file(nodes):
    n = nodes(options={"Msg_welcome": "220 kept by ctl"}).start()
    n.write_conf(extra_lines="Msg_welcome \"220 never\"\nTimeout \"unterminated\n")
    r = subprocess.run([SELORCTL, "-c", n.conf, "reload"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert n.conf in r.stderr, r.stderr
    assert n.log("warning").count("reload") == 0    # the node was never asked
    time.sleep(0.5)
    assert "kept by ctl" in banner(n)


def test_unknown_option_is_refused_by_the_node(nodes):
    """selorctl cannot know the modules' options; the node checks them as
    at start, and a file it refuses changes nothing."""
    n = nodes(options={"Msg_welcome": "220 kept by node"}).start()
    n.write_conf(extra_lines="Msg_welcome \"220 never\"\nNo_such_optoin 1\n")
    hup(n)
    wait_for(lambda: "nothing changed" in n.log("warning"), timeout=10, what="the refusal")
    assert "No_such_optoin" in n.log("warning")
    time.sleep(0.5)
    assert "kept by node" in banner(n)


def test_selorctl_reload_without_a_node(nodes):
    n = nodes()
    n.write_conf()
    r = subprocess.run([SELORCTL, "-c", n.conf, "reload"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "not running" in r.stderr


def test_many_reloads_under_traffic(nodes):
    """Generations come and go while sessions hold them (the sanitizer build
    catches a generation freed under a session)."""
    n = nodes().start()
    conns = []
    for i in range(6):
        c = n.smtp()
        c.ehlo("client%d.test" % i)
        conns.append(c)
        rewrite(n, Msg_welcome="220 gen %d" % i, Timeout=300 + i)
        hup(n)
        time.sleep(0.3)
    for c in conns:
        c.mail("a@remote.test")
        assert c.rcpt("alice@example.com")[0] == 250
        c.data(b"Subject: x\r\n\r\nbody\r\n")
        c.quit()
    wait_for(lambda: "gen 5" in banner(n), timeout=10, what="the last generation")


def test_ops_process_takes_reloads(nodes):
    """The ops process reads selor.conf again too, and goes on answering
    (its ports need a restart: named, kept)."""
    import socket
    from selortest import free_port, process_by_name
    agent, metrics = free_port(), free_port()
    n = nodes(options={"Agent_port": agent, "Metrics_port": metrics}).start()

    def reply():
        with socket.create_connection(("127.0.0.1", agent), timeout=5) as c:
            c.settimeout(5)
            return c.recv(128).decode()
    wait_for(lambda: "ready" in reply(), timeout=10, what="the agent")
    ops = process_by_name(n.proc.pid, "selor-ops")
    assert len(ops) == 1
    for i in range(3):
        rewrite(n, Lavg_queue=50 + i, Agent_port=agent + 1)
        hup(n)
        time.sleep(0.3)
    n.options["Agent_port"] = agent
    wait_for(lambda: "Agent_port changed: needs a restart" in n.log("warning"), timeout=10,
             what="the restart warning")
    assert "ready" in reply()
    assert process_by_name(n.proc.pid, "selor-ops") == ops


def test_sigusr1_reopens_every_process_log_after_a_rotation(nodes, workdir):
    """logrotate renames the files and sends SIGUSR1 to the master: the
    master, the SMTP workers and the queue process all write to new files."""
    from selortest import mda_script
    script, out = mda_script(workdir, "cat >> %(out)s")
    n = nodes(options={"Dlocal": script, "Dlocal_type": 0, "Immed_delivery": 2}).start()
    for name in ("selor.log", "summary.log", "warning.log"):
        os.rename(os.path.join(n.logdir, name), os.path.join(n.logdir, name + ".1"))
    os.kill(n.proc.pid, signal.SIGUSR1)
    time.sleep(0.5)
    c = n.smtp()
    c.sendmail("a@remote.test", ["alice@example.com"], "Subject: rotated\r\n\r\nbody\r\n")
    c.quit()
    # the worker's session and the queue process's delivery
    wait_for(lambda: "delivered to=<alice@example.com>" in n.log("summary"), timeout=20,
             what="the delivery in the new summary log")
    wait_for(lambda: "alice@example.com" in n.log(), timeout=10,
             what="the session in the new Central_log")
    # the master: a reload's line
    hup(n)
    wait_for(lambda: "reload" in n.log("warning"), timeout=10,
             what="the master's line in the new Warning_log")
