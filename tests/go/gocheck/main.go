// gocheck is the Go side of torrent-journal's interop tests (tests/go_compat.rs). It is
// written for this project from the go-i2p-bt facts in docs/FORMAT.md (field names, JSON tags,
// file layout, SQL and queries), with the types the Go code uses: time.Time for dates,
// encoding/json, and mattn/go-sqlite3 for the database.
//
//	gocheck fixtures DIR      writes torrents/<hex>.json for the fixture states, as the Go
//	                          file persistence marshals them
//	gocheck check DATA DB     reads a file projection DATA and a SQLite projection DB the way
//	                          the Go code does, re-marshals every file and compares the bytes,
//	                          then writes one torrent row and one metrics row the Go way
//
// Build without modules: GO111MODULE=off GOPATH=/usr/share/gocode go run main.go ...
package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// FileInfo, PeerInfo, TorrentState and SessionConfiguration carry go-i2p-bt's JSON tags.
type FileInfo struct {
	Name           string `json:"name"`
	Length         int64  `json:"length"`
	BytesCompleted int64  `json:"bytes_completed"`
	Priority       int64  `json:"priority"`
	Wanted         bool   `json:"wanted"`
}

type PeerInfo struct {
	ID         string `json:"id"`
	Address    string `json:"address"`
	Port       int64  `json:"port"`
	Uploaded   int64  `json:"uploaded"`
	Downloaded int64  `json:"downloaded"`
	Direction  string `json:"direction"`
}

// TorrentState: the info hash is kept as its hex text here (Go's own type is metainfo.Hash),
// the error as a string, and meta_info is not decoded.
type TorrentState struct {
	ID                  int64           `json:"id"`
	InfoHash            string          `json:"info_hash"`
	MetaInfo            json.RawMessage `json:"meta_info,omitempty"`
	Status              int64           `json:"status"`
	Error               *string         `json:"error,omitempty"`
	DownloadDir         string          `json:"download_dir"`
	AddedDate           time.Time       `json:"added_date"`
	StartDate           time.Time       `json:"start_date,omitempty"`
	Labels              []string        `json:"labels"`
	Downloaded          int64           `json:"downloaded"`
	Uploaded            int64           `json:"uploaded"`
	Left                int64           `json:"left"`
	PercentDone         float64         `json:"percent_done"`
	PieceCount          int64           `json:"piece_count"`
	PiecesComplete      int64           `json:"pieces_complete"`
	PiecesAvailable     int64           `json:"pieces_available"`
	DownloadRate        int64           `json:"download_rate"`
	UploadRate          int64           `json:"upload_rate"`
	ETA                 int64           `json:"eta"`
	PeerCount           int64           `json:"peer_count"`
	PeerConnectedCount  int64           `json:"peer_connected_count"`
	PeerSendingCount    int64           `json:"peer_sending_count"`
	PeerReceivingCount  int64           `json:"peer_receiving_count"`
	Files               []FileInfo      `json:"files"`
	Priorities          []int64         `json:"priorities"`
	Wanted              []bool          `json:"wanted"`
	TrackerList         []string        `json:"tracker_list"`
	Peers               []PeerInfo      `json:"peers"`
	SeedRatioLimit      float64         `json:"seed_ratio_limit"`
	SeedIdleLimit       int64           `json:"seed_idle_limit"`
	HonorsSessionLimits bool            `json:"honors_session_limits"`
}

type SessionConfiguration struct {
	DownloadDir               string  `json:"download_dir"`
	IncompleteDir             string  `json:"incomplete_dir"`
	IncompleteDirEnabled      bool    `json:"incomplete_dir_enabled"`
	PeerPort                  int64   `json:"peer_port"`
	PeerLimitGlobal           int64   `json:"peer_limit_global"`
	PeerLimitPerTorrent       int64   `json:"peer_limit_per_torrent"`
	DHTEnabled                bool    `json:"dht_enabled"`
	PEXEnabled                bool    `json:"pex_enabled"`
	LPDEnabled                bool    `json:"lpd_enabled"`
	UTPEnabled                bool    `json:"utp_enabled"`
	WebseedsEnabled           bool    `json:"webseeds_enabled"`
	Encryption                string  `json:"encryption"`
	SpeedLimitDown            int64   `json:"speed_limit_down"`
	SpeedLimitDownEnabled     bool    `json:"speed_limit_down_enabled"`
	SpeedLimitUp              int64   `json:"speed_limit_up"`
	SpeedLimitUpEnabled       bool    `json:"speed_limit_up_enabled"`
	AltSpeedDown              int64   `json:"alt_speed_down"`
	AltSpeedUp                int64   `json:"alt_speed_up"`
	AltSpeedEnabled           bool    `json:"alt_speed_enabled"`
	DownloadQueueEnabled      bool    `json:"download_queue_enabled"`
	DownloadQueueSize         int64   `json:"download_queue_size"`
	SeedQueueEnabled          bool    `json:"seed_queue_enabled"`
	SeedQueueSize             int64   `json:"seed_queue_size"`
	SeedRatioLimit            float64 `json:"seed_ratio_limit"`
	SeedRatioLimited          bool    `json:"seed_ratio_limited"`
	IdleSeedingLimit          int64   `json:"idle_seeding_limit"`
	IdleSeedingLimitEnabled   bool    `json:"idle_seeding_limit_enabled"`
	StartAddedTorrents        bool    `json:"start_added_torrents"`
	CacheSizeMB               int64   `json:"cache_size_mb"`
	Version                   string  `json:"version"`
	BlocklistEnabled          bool    `json:"blocklist_enabled"`
	BlocklistURL              string  `json:"blocklist_url"`
	BlocklistSize             int64   `json:"blocklist_size"`
	ScriptTorrentDoneEnabled  bool    `json:"script_torrent_done_enabled"`
	ScriptTorrentDoneFilename string  `json:"script_torrent_done_filename"`
}

// fileRecord is the map the Go file persistence marshals for torrents/<hex>.json: every key
// but meta_info, error, the rates, eta, the peer counts and peers.
func fileRecord(t *TorrentState) map[string]interface{} {
	return map[string]interface{}{
		"id": t.ID, "info_hash": t.InfoHash, "status": t.Status,
		"download_dir": t.DownloadDir, "added_date": t.AddedDate, "start_date": t.StartDate,
		"labels": t.Labels, "downloaded": t.Downloaded, "uploaded": t.Uploaded,
		"left": t.Left, "percent_done": t.PercentDone, "piece_count": t.PieceCount,
		"pieces_complete": t.PiecesComplete, "pieces_available": t.PiecesAvailable,
		"files": t.Files, "priorities": t.Priorities, "wanted": t.Wanted,
		"tracker_list": t.TrackerList, "seed_ratio_limit": t.SeedRatioLimit,
		"seed_idle_limit": t.SeedIdleLimit, "honors_session_limits": t.HonorsSessionLimits,
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// fixtures are the states tests/go_compat.rs builds too (keep the two lists in step).
func fixtures() []TorrentState {
	return []TorrentState{
		{
			ID: 7, InfoHash: "c12fe1c06bba254a9dc9f519b335aa7c1367a88a", Status: 4,
			DownloadDir: "/srv/<films> & \"more\"\\x",
			AddedDate:   at("2024-05-01T12:00:00.25Z"), StartDate: at("2024-05-01T12:00:02Z"),
			Labels:     []string{"linux", "<b>&amp;", "ünïcödé 😀 \u2028 \u2029 é"},
			Downloaded: 1_000_000_000_000_000, Uploaded: 5, Left: 3,
			PercentDone: 0.5, PieceCount: 10, PiecesComplete: 5, PiecesAvailable: 10,
			Files: []FileInfo{
				{Name: "a/dir\twith tab/1.iso", Length: 100, BytesCompleted: 50, Priority: 1, Wanted: true},
				{Name: "a/日本語\nnewline.txt", Length: 1, Priority: -1},
			},
			Priorities: []int64{1, -1}, Wanted: []bool{true, false},
			TrackerList:    []string{"udp://t.example:1337/announce?a=1&b=2"},
			SeedRatioLimit: 1, SeedIdleLimit: 30, HonorsSessionLimits: true,
		},
		{
			ID: 1, InfoHash: "0123456789abcdef0123456789abcdef01234567", Status: 1,
			DownloadDir: "downloads", AddedDate: at("2024-05-01T12:00:00.000000001Z"),
			Priorities: []int64{}, Wanted: []bool{}, TrackerList: []string{},
			SeedRatioLimit: 1e-7, HonorsSessionLimits: true,
		},
		{
			ID: 9223372036854775807, InfoHash: "ffffffffffffffffffffffffffffffffffffffff",
			Status: 6, DownloadDir: "", AddedDate: at("2262-04-11T23:47:16.854775807Z"),
			StartDate: at("1970-01-01T00:00:00Z"), Labels: []string{""},
			Downloaded: 9007199254740993, Left: -1, PercentDone: 1,
			Files: []FileInfo{{}}, Priorities: []int64{0}, Wanted: []bool{false},
			TrackerList: []string{}, SeedRatioLimit: 1e21, SeedIdleLimit: -1,
		},
		{
			ID: 2, InfoHash: "abababababababababababababababababababab", Status: 0,
			DownloadDir: "/d", AddedDate: at("2023-11-14T22:13:20.1Z"),
			StartDate: at("2023-11-14T22:13:21.123456Z"), Labels: []string{"x"},
			PercentDone: 0.30000000000000004, Priorities: []int64{}, Wanted: []bool{},
			TrackerList: []string{}, SeedRatioLimit: 2.5e-8,
		},
	}
}

func marshalFile(t *TorrentState) []byte {
	data, err := json.MarshalIndent(fileRecord(t), "", "  ")
	if err != nil {
		panic(err)
	}
	return data
}

func writeFixtures(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "torrents"), 0755); err != nil {
		return err
	}
	for i := range fixtures() {
		t := fixtures()[i]
		path := filepath.Join(dir, "torrents", t.InfoHash+".json")
		if err := os.WriteFile(path, marshalFile(&t), 0644); err != nil {
			return err
		}
	}
	return nil
}

// loadTorrentFile reads a torrent file as the Go file persistence does: into a map, the
// info_hash string dropped, re-marshalled, then into the struct.
func loadTorrentFile(data []byte, hash string) (*TorrentState, error) {
	var m map[string]interface{}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	delete(m, "info_hash")
	fixed, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var t TorrentState
	if err := json.Unmarshal(fixed, &t); err != nil {
		return nil, err
	}
	t.InfoHash = hash
	return &t, nil
}

type report struct {
	Files         int      `json:"files"`
	Session       bool     `json:"session"`
	Rows          []string `json:"rows"`
	Metrics       int      `json:"metrics"`
	WroteTorrent  string   `json:"wrote_torrent"`
	WroteMetricID int64    `json:"wrote_metric_id"`
}

func check(dataDir, dbPath string) error {
	var r report
	entries, err := os.ReadDir(filepath.Join(dataDir, "torrents"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dataDir, "torrents", e.Name()))
		if err != nil {
			return err
		}
		t, err := loadTorrentFile(data, strings.TrimSuffix(e.Name(), ".json"))
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		if again := marshalFile(t); !bytes.Equal(again, data) {
			return fmt.Errorf("%s: Go writes different bytes:\n%s\n--- ours:\n%s", e.Name(), again, data)
		}
		r.Files++
	}
	if data, err := os.ReadFile(filepath.Join(dataDir, "session.json")); err == nil {
		var c SessionConfiguration
		if err := json.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("session.json: %w", err)
		}
		again, _ := json.MarshalIndent(&c, "", "  ")
		if !bytes.Equal(again, data) {
			return fmt.Errorf("session.json: Go writes different bytes:\n%s\n--- ours:\n%s", again, data)
		}
		r.Session = true
	}

	db, err := sql.Open("sqlite3", "file:"+dbPath+"?_busy_timeout=10000&_journal_mode=WAL")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query("SELECT info_hash, data, added_date, updated_date FROM torrents ORDER BY added_date")
	if err != nil {
		return err
	}
	var last time.Time
	for rows.Next() {
		var hash, data string
		var added, updated time.Time
		if err := rows.Scan(&hash, &data, &added, &updated); err != nil {
			return fmt.Errorf("torrents row: %w", err)
		}
		if added.Before(last) {
			return fmt.Errorf("ORDER BY added_date is not time order at %s (%s after %s)", hash, added, last)
		}
		last = added
		var t TorrentState
		if err := json.Unmarshal([]byte(data), &t); err != nil {
			return fmt.Errorf("torrents.data of %s: %w", hash, err)
		}
		if t.InfoHash != hash || !t.AddedDate.Equal(added) {
			return fmt.Errorf("torrents row %s: data says %s added %s, column %s", hash, t.InfoHash, t.AddedDate, added)
		}
		r.Rows = append(r.Rows, hash)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var sessionData string
	var sessionUpdated time.Time
	err = db.QueryRow("SELECT data, updated_date FROM session_config WHERE id = 1").Scan(&sessionData, &sessionUpdated)
	if err != nil && err != sql.ErrNoRows {
		return fmt.Errorf("session_config: %w", err)
	}
	if err == nil {
		var c SessionConfiguration
		if err := json.Unmarshal([]byte(sessionData), &c); err != nil {
			return fmt.Errorf("session_config.data: %w", err)
		}
	}
	mrows, err := db.Query("SELECT id, info_hash, timestamp, downloaded, uploaded, download_rate, upload_rate, peer_count FROM torrent_metrics ORDER BY timestamp, id")
	if err != nil {
		return err
	}
	last = time.Time{}
	for mrows.Next() {
		var id, d, u, dr, ur, pc int64
		var hash string
		var ts time.Time
		if err := mrows.Scan(&id, &hash, &ts, &d, &u, &dr, &ur, &pc); err != nil {
			return fmt.Errorf("torrent_metrics row: %w", err)
		}
		if ts.Before(last) {
			return fmt.Errorf("ORDER BY timestamp is not time order at sample %d", id)
		}
		last = ts
		r.Metrics++
	}
	if err := mrows.Err(); err != nil {
		return err
	}

	// Write like the Go code: an upserted torrent and a positional metrics insert, with
	// time.Time values bound by the driver.
	t := fixtures()[3]
	data, _ := json.Marshal(fileRecord(&t))
	_, err = db.Exec(`INSERT INTO torrents (info_hash, data, status, percent_done, downloaded, uploaded, added_date, updated_date)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(info_hash) DO UPDATE SET data = excluded.data, status = excluded.status,
			percent_done = excluded.percent_done, downloaded = excluded.downloaded,
			uploaded = excluded.uploaded, updated_date = excluded.updated_date`,
		t.InfoHash, string(data), t.Status, t.PercentDone, t.Downloaded, t.Uploaded, t.AddedDate, at("2023-11-14T22:14:00.5Z"))
	if err != nil {
		return fmt.Errorf("upsert torrent: %w", err)
	}
	res, err := db.Exec("INSERT INTO torrent_metrics VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
		t.InfoHash, at("2023-11-14T22:13:25.75Z"), 10, 1, 100, 10, 3)
	if err != nil {
		return fmt.Errorf("insert metrics: %w", err)
	}
	r.WroteTorrent = t.InfoHash
	r.WroteMetricID, _ = res.LastInsertId()
	sort.Strings(r.Rows)
	out, _ := json.Marshal(&r)
	fmt.Println(string(out))
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "fixtures":
		err = writeFixtures(os.Args[2])
	case len(os.Args) == 4 && os.Args[1] == "check":
		err = check(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("usage: gocheck fixtures DIR | gocheck check DATA_DIR STATE_DB")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gocheck:", err)
		os.Exit(1)
	}
}
